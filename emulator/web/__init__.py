"""The HTTP surfaces: the Flask app factory, the control API, the dashboard and OpenAPI."""
