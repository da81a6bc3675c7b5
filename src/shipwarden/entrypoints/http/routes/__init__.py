"""One module per resource, each exposing ``router``; ``app.ROUTERS`` lists them."""
