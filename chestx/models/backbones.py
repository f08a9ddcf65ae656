"""The keras.applications backbones chestx offers for transfer learning."""

from __future__ import annotations

from keras import applications as apps

BACKBONES = {
    "resnet50": apps.ResNet50,
    "mobilenetv2": apps.MobileNetV2,
    "efficientnetb0": apps.EfficientNetB0,
    "densenet121": apps.DenseNet121,
}

BACKBONE_PREPROCESS = {
    "resnet50": apps.resnet50.preprocess_input,
    "mobilenetv2": apps.mobilenet_v2.preprocess_input,
    "efficientnetb0": apps.efficientnet.preprocess_input,
    "densenet121": apps.densenet.preprocess_input,
}
