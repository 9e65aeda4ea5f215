"""Model-predicted frame labels: cold label, blitz label and custom models (framework-free).

- :mod:`~medvid.predict.selection`: which frames a person labels (uniform | unique pHash).
- :mod:`~medvid.predict.data`: frames on disk as a torch ``Dataset``.
- :mod:`~medvid.predict.model`: ResNet18/34 spec, build, versioned save/load.
- :mod:`~medvid.predict.train`: training with a by-video validation split and early stopping.
- :mod:`~medvid.predict.infer`: batched prediction to a frame-label table, temporal smoothing.
- :mod:`~medvid.predict.strategies`: cold label, blitz label, custom model callables.
- :mod:`~medvid.predict.evaluate`: the lung-ultrasound evaluation and its report.
"""
