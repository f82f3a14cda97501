// Runs serving/http/page.html's script under node with a minimal DOM stub (no browser needed): a fake fetch
// answers one identification; the harness prints what the page shows as JSON on stdout.
"use strict";
const fs = require("fs");
const vm = require("vm");

const html = fs.readFileSync(process.argv[2], "utf8");
const answer = JSON.parse(process.argv[3]);
const script = html.match(/<script>([\s\S]*?)<\/script>/)[1];
const canvasCalls = [];

function element(id) {
  const el = {
    id, hidden: true, textContent: "", value: "", disabled: false, src: "", currentTime: 0, className: "",
    children: [], cells: [], rows: [], listeners: {}, clientWidth: 600, clientHeight: 200,
    files: id === "file" ? [{name: "song.flac"}] : [],
    appendChild(child) { this.children.push(child); this.cells.push(child); return child; },
    replaceChildren() { this.children = []; this.rows = []; },
    deleteCell(i) { this.cells.splice(i, 1); },
    insertRow() { const row = element("row"); row.insertCell = () => row.appendChild(element("td")); this.rows.push(row); return row; },
    addEventListener(type, fn) { this.listeners[type] = fn; },
    play() { this.playing = true; return Promise.resolve(); },
    getBoundingClientRect() { return {left: 0, top: 0}; },
    getContext() { return new Proxy({}, {get: (_t, name) => (...args) => canvasCalls.push([name, ...args]), set: () => true}); },
  };
  return el;
}

const elements = {};
const context = {
  document: {getElementById: (id) => (elements[id] ||= element(id)), createElement: (tag) => element(tag)},
  window: {devicePixelRatio: 1, addEventListener() {}},
  URL: {createObjectURL: () => "blob:song", revokeObjectURL() {}},
  URLSearchParams, FormData: class { append(...args) { this.args = args; } }, console,
  fetch: async (url, init) => {
    context.requested = {url, method: init.method, headers: init.headers};
    return {ok: true, status: 200, json: async () => answer};
  },
};
const head = context.document.getElementById("head");
["#", "sample", "score", "spans"].forEach((t) => { const th = element("th"); th.textContent = t; head.cells.push(th); });
vm.createContext(context);
vm.runInContext(script, context);
elements.key = elements.key || element("key");
elements.key.value = "k";
(async () => {
  await elements.form.listeners.submit({preventDefault() {}});
  const rows = elements.rows.rows.map((r) => r.cells.map((c) => c.children.length ? c.children.map((s) => s.textContent) : c.textContent));
  elements.rows.rows[0].cells[3].children.slice(-1)[0].onclick();
  const out = {
    status: elements.status.textContent, error: elements.error.textContent, rows,
    head: elements.head.cells.length, requested: context.requested, seek: elements.player.currentTime,
    canvasHidden: elements.timeline.hidden, strokes: canvasCalls.filter((c) => c[0] === "stroke").length,
    fills: canvasCalls.filter((c) => c[0] === "fillRect").length,
  };
  process.stdout.write(JSON.stringify(out));
})().catch((err) => { console.error(err.stack); process.exit(1); });
