/* A Flot plugin that draws Prometheus's "heatmap" display mode, written for coromesh.
 *
 * Prometheus's own plugin lives in web/ui/react-app/src/vendor/flot/, a directory the
 * Go module zip leaves out (it drops every vendor/ directory), so this file takes its
 * place when ops/prometheus/ui/build-assets.sh builds the UI from the module.
 *
 * The React app (pages/graph/Graph.tsx) sets `series.heatmap: true`, hides the lines,
 * and hands over one series per histogram bucket, sorted by `le`, with the per-bucket
 * count as the y value of each point; the y axis runs 0..number of buckets. This plugin
 * paints, for every bucket row and every interval between two samples, one cell whose
 * colour deepens with the count (zero counts stay blank).
 *
 * Copyright The coromesh authors. Licensed under the Apache License, Version 2.0.
 */
/* global jQuery */
(function ($) {
  var LIGHT = [253, 244, 235];
  var DARK = [117, 46, 18];

  function shade(fraction) {
    var rgb = LIGHT.map(function (low, i) {
      return Math.round(low + fraction * (DARK[i] - low));
    });
    return 'rgb(' + rgb.join(',') + ')';
  }

  function largestCount(series) {
    var largest = 0;
    series.forEach(function (bucket) {
      bucket.data.forEach(function (point) {
        if (point[1] > largest) largest = point[1];
      });
    });
    return largest;
  }

  function paint(plot, ctx) {
    if (!plot.getOptions().series.heatmap) return;
    var series = plot.getData();
    var largest = largestCount(series);
    if (largest <= 0) return;
    var offset = plot.getPlotOffset();
    var xaxis = plot.getXAxes()[0];
    var yaxis = plot.getYAxes()[0];
    ctx.save();
    ctx.translate(offset.left, offset.top);
    series.forEach(function (bucket, row) {
      var top = yaxis.p2c(row + 1);
      var height = yaxis.p2c(row) - top;
      for (var i = 0; i + 1 < bucket.data.length; i++) {
        var count = bucket.data[i][1];
        if (!count || count <= 0) continue;
        var left = xaxis.p2c(bucket.data[i][0]);
        var width = xaxis.p2c(bucket.data[i + 1][0]) - left;
        ctx.fillStyle = shade(count / largest);
        ctx.fillRect(left, top, Math.max(width - 1, 1), Math.max(height - 1, 1));
      }
    });
    ctx.restore();
  }

  $.plot.plugins.push({
    init: function (plot) {
      plot.hooks.draw.push(paint);
    },
    options: { series: { heatmap: false } },
    name: 'heatmap',
    version: '1.0',
  });
})(jQuery);
