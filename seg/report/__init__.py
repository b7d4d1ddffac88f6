"""What training and evaluation show: tables, figures, panels, the HTML report, TensorBoard.

- ``tables``: the paper-style comparison and per-class tables (built once, for tables.md and
  report.html), metrics.json/CSV files and the mIoU-against-step curve's data.
- ``figures``: every matplotlib figure (curves, IU bars, confusion matrix); matplotlib set up once.
- ``draw``: palette colouring, panels with class legends, error maps and overlays (PIL).
- ``images``: prediction images on disk (palette PNG masks, panels, overlays).
- ``html`` and ``template``: ``report.html``, one self-contained page per evaluation.
- ``tensorboard``: the validation-panels callback and the hyperparameter table.
- ``finish``: the run's summary once it is done (hyperparameters beside the final metrics, the
  best checkpoint for the trackers, the commands to run next).
"""
