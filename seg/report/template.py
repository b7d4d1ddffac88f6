"""The page of ``report.html``: a Jinja2 template with its CSS and sorting script inline.

Nothing in it refers to the network: figures and panels arrive as ``data:`` URIs, the fonts are
the browser's own, and the table sorting is a few lines of plain JavaScript.
"""

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Evaluation on {{ split }}: {{ best.checkpoint }}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330;
       margin: 0; background: #f4f5f7; }
header { background: #1d2330; color: #fff; padding: 18px 32px; }
header h1 { margin: 0 0 4px; font-size: 22px; font-weight: 600; }
header p { margin: 0; color: #c4c9d4; }
main { max-width: 1280px; margin: 0 auto; padding: 8px 32px 48px; }
section { background: #fff; border-radius: 8px; padding: 16px 20px; margin: 18px 0;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
h2 { font-size: 17px; margin: 0 0 10px; }
p.note { color: #5b6475; margin: 4px 0 10px; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 10px; border-bottom: 1px solid #e4e7ec; text-align: right; }
th { background: #f0f2f5; position: sticky; top: 0; }
th:first-child, td:first-child, td.text { text-align: left; }
tr.best td { font-weight: 600; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #9aa3b2; }
.scroll { max-height: 460px; overflow: auto; border: 1px solid #e4e7ec; border-radius: 4px; }
.swatch { display: inline-block; width: 11px; height: 11px; margin-right: 6px;
          border: 1px solid rgba(0,0,0,.25); vertical-align: -1px; }
.pair { display: flex; flex-wrap: wrap; gap: 0 18px; align-items: flex-start; }
.pair section { flex: 1 1 480px; }
.figures { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
figure { margin: 0; }
img { max-width: 100%; height: auto; }
.worst figure { margin: 0 0 18px; }
figcaption { font-weight: 600; margin-bottom: 4px; }
</style>
</head>
<body>
<header>
<h1>Evaluation on {{ split }}</h1>
<p>{{ results|length }} checkpoint{{ "s" if results|length > 1 }} &middot; {{ images }} images
&middot; best: {{ best.checkpoint }} ({{ pct(best.mIoU) }} mean IU) &middot; {{ created }}</p>
</header>
<main>
<section id="comparison">
<h2>Checkpoints</h2>
<table>
<tr>{% for h in comparison.header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for row in comparison.rows %}
<tr{% if row[0] == best.checkpoint %} class="best"{% endif %}>
{% for cell in row %}<td{% if loop.index <= 3 %} class="text"{% endif %}>{{ cell }}</td>{% endfor %}
</tr>
{% endfor %}
</table>
{% if failures %}<p class="note">Not evaluated:</p><ul>
{% for f in failures %}<li>{{ f.checkpoint }}: {{ f.error }}</li>{% endfor %}</ul>{% endif %}
</section>
<section id="per-class">
<h2>Per-class IU (%)</h2>
<div class="figures">
<figure><img alt="per-class IU bar chart" src="{{ bars }}"></figure>
<table>
<tr><th>class</th>{% for r in results %}<th>{{ r.checkpoint }}</th>{% endfor %}</tr>
{% for name in class_names %}
<tr><td><span class="swatch" style="background: {{ colours[loop.index0] }}"></span>{{ name }}</td>
{% for r in results %}<td>{{ pct(r.iou[name]) }}</td>{% endfor %}</tr>
{% endfor %}
</table>
</div>
</section>
<div class="pair">
<section id="confusion">
<h2>Confusion matrix: {{ best.checkpoint }}</h2>
<p class="note">Rows: ground truth; columns: prediction; each row sums to 100 %.</p>
<img alt="confusion matrix" src="{{ confusion }}">
</section>
{% if curve %}
<section id="curve">
<h2>Mean IU against training step</h2>
<img alt="mean IU against step" src="{{ curve }}">
</section>
{% endif %}
</div>
<section id="worst" class="worst">
<h2>The {{ worst|length }} worst images: {{ best.checkpoint }}</h2>
<p class="note">image | ground truth | prediction | errors (red: wrong; grey: right), lowest mean IU
first.</p>
{% for w in worst %}
<figure><figcaption>{{ w.id }}: mean IU {{ pct(w.mIoU) }}</figcaption>
<img alt="{{ w.id }}" src="{{ w.uri }}"></figure>
{% endfor %}
</section>
<section id="per-image">
<h2>Per image: {{ best.checkpoint }}</h2>
<p class="note">mIoU over the classes present in the truth or the prediction. Click a header to
sort; every checkpoint's rows are in per_image.csv.</p>
<div class="scroll">
<table class="sortable">
<tr><th>id</th><th>pixel acc. (%)</th><th>mean IU (%)</th><th>worst class</th>
<th>its IU (%)</th></tr>
{% for r in per_image %}
<tr><td>{{ r.id }}</td><td>{{ pct(r.pixel_acc) }}</td><td>{{ pct(r.mIoU) }}</td>
<td class="text">{{ r.worst_class or "-" }}</td>
<td>{{ pct(r.iou[r.worst_class]) if r.worst_class else "-" }}</td></tr>
{% endfor %}
</table>
</div>
</section>
</main>
<script>
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var rows = Array.from(table.rows).slice(1);
      var up = th.dataset.order !== "up";
      th.dataset.order = up ? "up" : "down";
      var key = function (row) {
        var text = row.cells[column].textContent, value = parseFloat(text);
        return isNaN(value) ? (text === "-" ? Infinity : text) : value;
      };
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var order = typeof x !== typeof y ? (typeof x === "number" ? -1 : 1)
                  : x < y ? -1 : x > y ? 1 : 0;
        return up ? order : -order;
      });
      rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
    });
  });
});
</script>
</body>
</html>
"""
