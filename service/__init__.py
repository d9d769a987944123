"""The HTTP service: FastAPI app, tokenizer, batcher. Imports ``model``, never ``training``."""
