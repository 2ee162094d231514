// A funnel chart drawn as inline SVG (no chart library): one centred bar per stage, widths proportional to
// the first stage, the number and the share of the first stage written next to each bar. The SVG is one
// image to a screen reader, labelled with every stage's number.
const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 400, LABEL = 80, NUMBERS = 80, ROW = 28, BAR = 20;

function node(tag, attrs = {}, text) {
  const made = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) made.setAttribute(key, value);
  if (text !== undefined) made.textContent = text;
  return made;
}

function share(value, first) {
  return first ? `${Math.round((100 * value) / first)}%` : "";
}

// stages: [{ key: "sent", label: "Sent", value: 2 }, …]; title: "Telegram funnel"; tone: a CSS class
export function funnel(title, stages, tone) {
  const first = stages.length ? stages[0].value : 0;
  const widest = Math.max(1, ...stages.map((s) => s.value));
  const room = WIDTH - LABEL - NUMBERS;
  const label = `${title}: ${stages.map((s) => `${s.label.toLowerCase()} ${s.value}`).join(", ")}`;
  const chart = node("svg", { class: `funnel ${tone || ""}`, role: "img", "aria-label": label,
    viewBox: `0 0 ${WIDTH} ${stages.length * ROW}`, width: WIDTH, height: stages.length * ROW });
  chart.append(node("title", {}, label));
  stages.forEach((stage, i) => {
    const width = stage.value ? Math.max(2, (room * stage.value) / widest) : 0;
    const y = i * ROW + (ROW - BAR) / 2;
    const row = node("g", { class: "stage", "data-metric": stage.key, "aria-hidden": "true" });
    row.append(
      node("text", { class: "name", x: LABEL - 8, y: y + BAR / 2, "text-anchor": "end", "dominant-baseline": "middle" },
        stage.label),
      node("rect", { class: "track", x: LABEL, y, width: room, height: BAR, rx: 3 }),
      node("rect", { class: "bar", x: LABEL + (room - width) / 2, y, width, height: BAR, rx: 3,
        "data-metric": stage.key, "data-value": stage.value }),
      node("text", { class: "number", x: WIDTH - NUMBERS + 8, y: y + BAR / 2, "dominant-baseline": "middle" },
        i === 0 ? `${stage.value}` : `${stage.value} · ${share(stage.value, first)}`));
    chart.append(row);
  });
  return chart;
}
