"""`python -m playground serve`: a trained model behind an OpenAI-compatible HTTP API (FastAPI +
uvicorn) that streams characters; one engine thread decodes every request together."""
