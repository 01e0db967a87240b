"""Built-in model families; importing this package registers them all (and the `timm:`/`monai:` prefixes)."""
from zoo.models import (  # noqa: F401
    attention_unet, axial_unet, mk_unet, monai_models, nat, sa_unet, timm_encoder, transunet, unet, van, vit,
)
