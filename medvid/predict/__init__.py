"""Model-predicted frame labels: cold label, blitz label and custom models (framework-free).

- :mod:`~medvid.predict.selection`: which frames a person labels (uniform | unique pHash |
  active: uncertainty and diversity on a network's features).
- :mod:`~medvid.predict.data`: frames on disk as a torch ``Dataset``; ultrasound augmentation.
- :mod:`~medvid.predict.model`: tiny/small ConvNets and ResNet18/34, spec, versioned save/load.
- :mod:`~medvid.predict.pretrain`: SimCLR pretraining on unlabelled frames, versioned backbones.
- :mod:`~medvid.predict.train`: training validated on held-out patients: balanced sampling,
  augmentation, early stopping, heads on a frozen backbone, calibration.
- :mod:`~medvid.predict.trust`: temperature scaling and out-of-distribution flags.
- :mod:`~medvid.predict.infer`: batched prediction to a frame-label table, temporal smoothing,
  clip aggregation, trust flags.
- :mod:`~medvid.predict.strategies`: cold label, blitz label, custom model callables.
- :mod:`~medvid.predict.evaluate`: grouped k-fold evaluation by patient and the labelling-cost
  curve, for any project's reviewed labels.
"""
