"""What training writes and serving reads: model inputs, preprocessing, model bundles.

Pure numpy (plus onnxruntime / xgboost to run a bundle): the inference image imports this
package without the training stack (no torch, no scikit-learn).
"""
