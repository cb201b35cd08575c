"""One module per API resource; each method validates, describes one request, returns a model."""
