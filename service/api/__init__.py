"""The HTTP side: the FastAPI app, its routes and schemas, authentication, middleware and the
error answers. Runs in every HTTP worker; never imports torch (the models run in
:mod:`tagserve.service.inference`'s worker processes)."""
