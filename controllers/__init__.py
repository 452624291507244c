"""Built-in controllers; importing this package registers them."""
