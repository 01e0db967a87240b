"""Built-in model families; importing this package registers them all."""
from zoo.models import unet  # noqa: F401
