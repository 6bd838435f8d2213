"""The routes by which a chain reaches stage 3: one module per delivery path."""
