"""Deployment: a self-contained ONNX model, int8 quantisation, tiled prediction of any size.

- ``seg.deploy.onnx``: the graph (uint8 NHWC in; normalise, pad, crop, flip, argmax inside) and
  its export with metadata and a model card (needs torch).
- ``seg.deploy.quantize``: static int8 QDQ quantisation with an accuracy guard (needs torch for
  the data pipeline).
- ``seg.deploy.runtime``: running an exported model with onnxruntime; never imports torch.
- ``seg.deploy.tiles``: tile-by-tile inference and windowed GeoTIFF I/O in bounded memory;
  never imports torch.
"""
