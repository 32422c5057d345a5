"""Self-supervised pre-training objectives for plain ViTs: the paper's masked patch prediction and MAE, with their
masking, targets, decoders and pictures. Imports models and layers only; the trainer wires them in as tasks."""
from .config import TARGETS, MAEConfig, MaskedPatchConfig, SelfSupConfig
from .mae import MAEDecoder, MAEOutput, MaskedAutoencoder, mae_loss
from .masked_patch import MaskedPatchHead, MaskedPatchOutput, MaskedPatchPredictor
from .masking import Corruption, corrupt_patches, masked_mean, masked_places, unshuffle
from .objective import Objective, check_plain_patches
from .patches import class_colors, input_pixels, mean_color_classes, norm_pix, patchify, unpatchify
from .pictures import MAE_PICTURE, MASKED_PATCH_PICTURE, mae_pictures, masked_patch_pictures

__all__ = [
    "TARGETS", "MAEConfig", "MaskedPatchConfig", "SelfSupConfig", "MAEDecoder", "MAEOutput", "MaskedAutoencoder",
    "mae_loss", "MaskedPatchHead", "MaskedPatchOutput", "MaskedPatchPredictor", "Corruption", "corrupt_patches",
    "masked_mean", "masked_places", "unshuffle", "Objective", "check_plain_patches", "class_colors", "input_pixels",
    "mean_color_classes", "norm_pix", "patchify", "unpatchify", "MAE_PICTURE", "MASKED_PATCH_PICTURE",
    "mae_pictures", "masked_patch_pictures",
]
