"""Built-in model families; importing this package registers them all (and the `timm:`/`monai:` prefixes)."""
from zoo.models import mk_unet, monai_models, sa_unet, timm_encoder, transunet, unet, vit  # noqa: F401
