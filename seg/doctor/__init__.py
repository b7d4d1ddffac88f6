"""The dataset doctor: tools that read a raw tree before any training, apart from the pipeline.

- ``cli``: ``python -m seg.doctor ROOT`` scans a tree, prints what it holds and every problem at
  once, and writes the data config ``python train.py data=NAME`` trains with.
- ``detect`` (layout, name patterns, splits, encoding), ``scan`` (sizes, bands, statistics, class
  frequencies), ``diagnosis`` (the report and its problems), ``data_config`` (the YAML written).
- ``sequences``: ``python -m seg.doctor.sequences`` writes held-out-sequence split lists for video
  datasets such as CamVid.

``python -m seg.plan`` builds on the doctor's report to plan a whole experiment.
"""
