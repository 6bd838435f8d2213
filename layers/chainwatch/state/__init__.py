"""State stores behind the engine's :class:`~chainwatch.engine.store.StateStore` port."""
