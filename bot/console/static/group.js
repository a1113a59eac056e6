// The group page's charts (Apache ECharts): messages and active members per day, joins and
// leaves, retention of joiners, member tiers and the hour-of-week heatmap. The figures are the
// page's embedded JSON (#group-stats, what GET /api/groups/{id}/stats answers) and the words
// its labels (#group-labels). Each chart element gets data-drawn="1" when ECharts has finished
// drawing it, and <body data-charts="drawn"> once all are; "failed" (and the error in the
// console) if one could not be drawn.
"use strict";

(() => {
  const COLORS = {
    messages: "#2f6fd0", active: "#1e8e3e", joins: "#1e8e3e", leaves: "#c0392b",
    retention: "#7b5ea7", tiers: "#2f6fd0",
  };

  const readJson = (id) => JSON.parse(document.getElementById(id).textContent);
  const fill = (text, values) => text.replace(/\{(\w+)\}/g, (all, key) => (key in values ? values[key] : all));
  const narrow = () => window.matchMedia("(max-width: 700px)").matches;

  // Days as MM-DD on the axis (the year is in the page's heading).
  const dayLabel = (iso) => iso.slice(5);

  function grid() {
    return { left: 8, right: 12, top: 36, bottom: 8, containLabel: true };
  }

  function perDay(stats, words) {
    const days = stats.series.map((d) => dayLabel(d.day));
    const zoom = stats.series.length > 31 ? [{ type: "inside" }] : [];
    return {
      messages: {
        tooltip: { trigger: "axis" },
        legend: { top: 0, data: [words.messages, words.active] },
        grid: grid(),
        dataZoom: zoom,
        xAxis: { type: "category", data: days },
        yAxis: [
          { type: "value", name: "", minInterval: 1 },
          { type: "value", name: "", minInterval: 1, splitLine: { show: false } },
        ],
        series: [
          { name: words.messages, type: "bar", data: stats.series.map((d) => d.messages), itemStyle: { color: COLORS.messages } },
          { name: words.active, type: "line", yAxisIndex: 1, smooth: true, data: stats.series.map((d) => d.active), itemStyle: { color: COLORS.active } },
        ],
      },
      joins: {
        tooltip: { trigger: "axis" },
        legend: { top: 0, data: [words.joins, words.leaves] },
        grid: grid(),
        dataZoom: zoom,
        xAxis: { type: "category", data: days },
        yAxis: { type: "value", minInterval: 1 },
        series: [
          { name: words.joins, type: "bar", data: stats.series.map((d) => d.joins), itemStyle: { color: COLORS.joins } },
          { name: words.leaves, type: "bar", data: stats.series.map((d) => d.leaves), itemStyle: { color: COLORS.leaves } },
        ],
      },
    };
  }

  function retention(stats, words) {
    const rows = stats.retention;
    const counted = rows.some((r) => r.counted > 0);
    return {
      tooltip: {
        trigger: "axis",
        formatter: (items) => {
          const row = rows[items[0].dataIndex];
          const rate = row.rate === null ? "–" : `${Math.round(row.rate * 100)}%`;
          return `${fill(words.retention_after, { n: row.days })}: ${rate}<br>${fill(words.joiners_counted, row)}`;
        },
      },
      title: counted ? undefined : { text: words.no_joiners, left: "center", top: "middle", textStyle: { fontSize: 13, color: "#6b7785", fontWeight: "normal" } },
      grid: grid(),
      xAxis: { type: "category", data: rows.map((r) => fill(words.retention_after, { n: r.days })) },
      yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
      series: [{
        name: words.retention_rate,
        type: "bar",
        barMaxWidth: 48,
        data: rows.map((r) => (r.rate === null ? null : Math.round(r.rate * 1000) / 10)),
        label: { show: true, position: "top", formatter: (p) => (p.value === null || p.value === undefined ? "" : `${p.value}%`) },
        itemStyle: { color: COLORS.retention },
      }],
    };
  }

  function tiers(stats, words, names) {
    const rows = stats.tiers;
    return {
      tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
      grid: grid(),
      xAxis: { type: "value", minInterval: 1 },
      yAxis: { type: "category", inverse: true, data: rows.map((r) => names[r.tier] || r.tier) },
      series: [{
        name: words.count,
        type: "bar",
        barMaxWidth: 28,
        data: rows.map((r) => r.count),
        label: { show: true, position: "right" },
        itemStyle: { color: COLORS.tiers },
      }],
    };
  }

  function heatmap(stats, words, weekdays) {
    const data = [];
    let most = 0;
    stats.heatmap.forEach((hours, weekday) => hours.forEach((count, hour) => {
      data.push([hour, weekday, count]);
      most = Math.max(most, count);
    }));
    const small = narrow();
    return {
      tooltip: {
        position: "top",
        formatter: (p) => `${weekdays[p.value[1]]} ${String(p.value[0]).padStart(2, "0")}:00 · ${words.messages}: ${p.value[2]}`,
      },
      grid: { left: 8, right: 12, top: 8, bottom: 56, containLabel: true },
      xAxis: {
        type: "category", name: words.hour, nameLocation: "end",
        data: Array.from({ length: 24 }, (_, h) => String(h)),
        splitArea: { show: true }, axisLabel: { interval: small ? 2 : 0 },
      },
      yAxis: { type: "category", inverse: true, data: weekdays, splitArea: { show: true } },
      visualMap: {
        min: 0, max: Math.max(most, 1), calculable: true, orient: "horizontal",
        left: "center", bottom: 0, itemHeight: small ? 120 : 200,
        inRange: { color: ["#f3f7fd", "#9cc0ef", "#2f6fd0", "#1d3557"] },
      },
      series: [{ name: words.messages, type: "heatmap", data, emphasis: { itemStyle: { borderColor: "#333", borderWidth: 1 } } }],
    };
  }

  function draw() {
    const body = document.body;
    if (typeof echarts === "undefined") {
      body.dataset.charts = "failed";
      throw new Error("ECharts did not load (/static/vendor/echarts/echarts.min.js)");
    }
    const stats = readJson("group-stats");
    const labels = readJson("group-labels");
    const words = labels.words;
    const locale = (document.querySelector('meta[name="lang"]')?.content || "zh") === "zh" ? "ZH" : "EN";
    const daily = perDay(stats, words);
    const options = {
      "chart-messages": daily.messages,
      "chart-joins": daily.joins,
      "chart-retention": retention(stats, words),
      "chart-tiers": tiers(stats, words, labels.tiers),
      "chart-heatmap": heatmap(stats, words, labels.weekdays),
    };
    const charts = [];
    let waiting = 0;
    for (const [id, option] of Object.entries(options)) {
      const element = document.getElementById(id);
      if (!element) continue;
      const chart = echarts.init(element, null, { locale });
      waiting += 1;
      let done = false;
      chart.on("finished", () => {
        if (done) return;
        done = true;
        element.dataset.drawn = "1";
        waiting -= 1;
        if (waiting === 0) body.dataset.charts = "drawn";
      });
      chart.setOption({ animationDuration: 300, ...option });
      charts.push(chart);
    }
    if (waiting === 0) body.dataset.charts = "drawn";
    let pending = 0;
    window.addEventListener("resize", () => {
      cancelAnimationFrame(pending);
      pending = requestAnimationFrame(() => charts.forEach((chart) => chart.resize()));
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    try {
      draw();
    } catch (error) {
      document.body.dataset.charts = "failed";
      if (typeof Console !== "undefined") Console.notice(String(error.message || error), true);
      throw error;
    }
  });
})();
