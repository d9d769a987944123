"""Getting sentences tagged: the batcher that coalesces requests, the registry of loaded
models, and the model worker process (its wire protocol, the client an HTTP worker uses,
the owner that starts and replaces it, and the worker's own main loop)."""
