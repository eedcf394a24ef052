// tfleet dashboard: renders the JSON state pushed over server-sent events (no framework, no build).
// Every string comes from etcd, where anyone with etcdctl can write: the page builds text nodes only.
"use strict";

(function () {
  const page = window.tfleetDashboard = {
    loadId: Math.random().toString(36).slice(2),  // tests check it survives updates (no reload)
    loadedAt: Date.now(),
    updates: 0,  // states and patches received
    patches: 0,
    state: null,
    selected: null,
  };
  const MAX_ROWS = 300;
  let previousCells = {};
  let history = { model: null, sequence: null, data: null, error: null };

  // -- DOM helpers ------------------------------------------------------------------------
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else if (key === "onclick") node.addEventListener("click", value);
      else if (key.startsWith("data-")) node.setAttribute(key, value);
      else node.setAttribute(key, value === true ? "" : value);
    }
    for (const child of children.flat(Infinity)) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const $ = (id) => document.getElementById(id);
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  function when(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    return isNaN(d) ? iso : d.toLocaleString();
  }
  function json(value) {
    return value === undefined ? "null" : JSON.stringify(value);
  }
  function labelTags(labels) {
    return Object.entries(labels || {}).map(([label, v]) => el("span", { class: "tag label", text: `${label}→${v}` }));
  }

  // -- header, summary, panels --------------------------------------------------------------
  function renderHeader(s) {
    $("prefix").textContent = s.prefix;
    $("revision").textContent = String(s.revision);
    $("updated").textContent = `updated ${new Date().toLocaleTimeString()}`;
    const leader = $("leader");
    leader.replaceChildren();
    const me = s.dashboard && s.dashboard.controller;
    if (s.leader) {
      leader.append("leader ", el("b", { text: s.leader.id }), ` since ${when(s.leader.since)} (v${s.leader.version})`);
    } else {
      leader.append(el("span", { class: "pill down", text: "no leader" }));
    }
    $("servedby").textContent = me ? `served by ${me} (${s.leader && s.leader.id === me ? "leader" : "standby"})` : "";
    const banner = $("banner");
    const err = s.dashboard && s.dashboard.etcd_error;
    banner.hidden = !err;
    banner.textContent = err ? `etcd unreachable, showing the last state read (revision ${s.revision}): ${err}` : "";
  }

  function card(n, label, tone) {
    return el("div", { class: `card ${tone || ""}` }, el("div", { class: "n", text: String(n) }), el("div", { class: "l", text: label }));
  }

  function renderSummary(s) {
    const sum = s.summary || {};
    const v = sum.versions || {};
    const loading = (v.LOADING || 0) + (v.START || 0);
    $("summary").replaceChildren(
      card(`${sum.hosts_alive || 0}/${sum.hosts || 0}`, "hosts alive", (sum.hosts_alive || 0) < (sum.hosts || 0) ? "bad" : ""),
      card(sum.models || 0, "models"),
      card(v.AVAILABLE || 0, "versions AVAILABLE", "ok"),
      card(loading, "versions loading", loading ? "wait" : ""),
      card(sum.rollouts || 0, "rollouts in progress", sum.rollouts ? "wait" : ""),
      card(sum.errors || 0, "errors and reasons", sum.errors ? "bad" : ""),
    );
  }

  function renderRollouts(s) {
    const box = $("rollouts");
    if (!s.rollouts.length) {
      box.replaceChildren(el("div", { class: "empty", text: "none: every model is stable" }));
      return;
    }
    const rows = s.rollouts.map((r) => el("tr", { "data-model": r.model },
      el("td", {}, el("button", { class: "modelbtn", text: r.model, onclick: () => select(r.model) })),
      el("td", {}, el("span", { class: "tag phase", text: r.phase })),
      el("td", { class: "mono", text: `${r.from_versions.join(",") || "–"} → ${r.to_versions.join(",") || "–"}` }),
      el("td", { text: r.reason || "" }),
    ));
    box.replaceChildren(el("table", { class: "rtable" },
      el("thead", {}, el("tr", {}, el("th", { text: "model" }), el("th", { text: "phase" }), el("th", { text: "from → to" }), el("th", { text: "reason" }))),
      el("tbody", {}, rows)));
  }

  function renderErrors(s) {
    const box = $("errors");
    if (!s.errors.length) {
      box.replaceChildren(el("div", { class: "empty", text: "no errors" }));
      return;
    }
    box.replaceChildren(el("ul", { class: "plist" }, s.errors.map((e) => el("li", { "data-kind": e.kind },
      el("span", { class: `kind k-${e.kind}`, text: e.kind }),
      e.model ? el("button", { class: "modelbtn", text: e.model, onclick: () => select(e.model) }) : null,
      e.model && e.host ? " on " : "",
      e.host ? el("span", { class: "subject", text: e.host }) : null,
      e.model || e.host ? ": " : "",
      e.message,
    ))));
  }

  // -- the grid -------------------------------------------------------------------------------
  function hostHeader(h) {
    const badges = [];
    if (!h.alive) badges.push(el("span", { class: "tag bad", text: "DOWN", title: "no host record: the agent is gone or cut off" }));
    if (h.cordoned) badges.push(el("span", { class: "tag warn", text: "CORDONED", title: h.control_reason || "" }));
    if (h.draining) badges.push(el("span", { class: "tag bad", text: "DRAINING", title: h.control_reason || "" }));
    const classes = [h.cordoned || h.draining ? "cordoned" : "", h.alive ? "" : "down"].join(" ").trim();
    return el("th", { class: classes, "data-host": h.name, scope: "col" },
      el("div", { class: "hname", text: h.name }), badges,
      el("div", { class: "small" }, Object.entries(h.labels).map(([k, v]) => el("span", { class: "tag", text: `${k}=${v}` }))),
      h.alive ? el("div", { class: "small", text: `${h.memory_mb} MB · ${plural(h.models, "model")}` }) : null,
      h.control_reason ? el("div", { class: "small", text: h.control_reason }) : null,
    );
  }

  function modelHeader(m) {
    const tags = [];
    if (!m.managed) tags.push(el("span", { class: "tag", text: "unmanaged", title: "assignments written by hand, no intent" }));
    if (m.health && m.health !== "ok") tags.push(el("span", { class: `tag ${m.health === "degraded" || m.health === "unknown" || m.health === "deleting" ? "warn" : "bad"}`, "data-health": m.health, text: m.health.toUpperCase(), title: m.health_reason }));
    if (m.rollout && m.rollout.phase !== "stable") tags.push(el("span", { class: "tag phase", text: m.rollout.phase, title: m.rollout.reason }));
    if (m.error) tags.push(el("span", { class: "tag bad", text: "ERROR", title: m.error }));
    if (m.reasons.length) tags.push(el("span", { class: "tag warn", text: "UNPLACED", title: m.reasons.join("\n") }));
    if (m.failures.length) tags.push(el("span", { class: "tag bad", text: "FAILED", title: m.failures.map((f) => `v${f.version} on ${f.host}: ${f.error}`).join("\n") }));
    const tone = m.ready_replicas >= m.wanted_replicas ? "ok" : m.ready_replicas > 0 ? "part" : "none";
    const labels = m.intent ? m.intent.labels : {};
    return el("th", { scope: "row", "data-model": m.name },
      el("div", {}, el("button", { class: "modelbtn", text: m.name, onclick: () => select(m.name) }),
        el("span", { class: `ready ${tone}`, "data-ready": `${m.ready_replicas}/${m.wanted_replicas}`, text: `${m.ready_replicas}/${m.wanted_replicas} ready` })),
      el("div", {}, tags, labelTags(labels)),
      m.intent ? el("div", { class: "small", text: `${m.intent.policy} · ${plural(m.intent.replicas, "replica")} · ${m.intent.strategy}` }) : null,
    );
  }

  function chip(version, v) {
    const failed = v.state === "END" && (v.error_code || v.error_message);
    const cls = failed ? "s-FAILED" : `s-${v.state}`;
    return el("span", { class: `chip ${cls}`, "data-version": version, "data-state": v.state, title: v.error_message || v.state, text: `v${version} ${v.state}` });
  }

  function cellNode(m, h, c) {
    const classes = [h.cordoned || h.draining ? "cordoned" : "", h.alive ? "" : "down"];
    if (!c) return el("td", { class: classes.join(" ").trim() });
    const key = `${m.name}\u0000${h.name}`;
    const signature = JSON.stringify(c);
    if (previousCells[key] !== undefined && previousCells[key] !== signature) classes.push("changed");
    nextCells[key] = signature;
    const chips = Object.entries(c.versions).map(([version, v]) => chip(version, v));
    if (!chips.length && c.assigned) chips.push(el("span", { class: "chip s-PENDING", "data-state": "PENDING", text: "pending", title: `assigned: ${c.assigned.policy}` }));
    return el("td", { class: classes.join(" ").trim(), "data-model": m.name, "data-host": h.name },
      el("div", {}, chips),
      el("div", {}, labelTags(c.labels), c.canary ? el("span", { class: "tag phase", text: "canary" }) : null,
        c.pending && Object.keys(c.versions).length ? el("span", { class: "tag", text: "pending", title: "the agent has not reported on the latest assignment yet" }) : null,
        !c.assigned && !c.assignment_error ? el("span", { class: "tag", text: "unassigned", title: "no assignment: being unloaded" }) : null),
      c.assignment_error ? el("div", { class: "cellerr", text: c.assignment_error }) : null,
      c.error ? el("div", { class: "cellerr", text: c.error }) : null,
    );
  }

  let nextCells = {};
  function renderGrid(s) {
    const needle = $("filter").value.trim().toLowerCase();
    const hosts = s.hosts.filter((h) => !needle || h.name.toLowerCase().includes(needle) || s.models.some((m) => m.name.toLowerCase().includes(needle) && (s.cells[m.name] || {})[h.name]));
    const matching = s.models.filter((m) => !needle || m.name.toLowerCase().includes(needle) || hosts.some((h) => h.name.toLowerCase().includes(needle) && (s.cells[m.name] || {})[h.name]));
    // a browser table of thousands of rows redrawn on every change is slow: the filter narrows it
    const models = matching.slice(0, MAX_ROWS);
    const note = $("gridnote");
    note.hidden = matching.length <= MAX_ROWS;
    note.textContent = note.hidden ? "" : `showing the first ${MAX_ROWS} of ${matching.length} models: type in the filter to narrow`;
    const thead = document.querySelector("#grid thead");
    const tbody = document.querySelector("#grid tbody");
    thead.replaceChildren(el("tr", {}, el("th", { class: "corner", text: `${plural(models.length, "model")} × ${plural(hosts.length, "host")}` }), hosts.map(hostHeader)));
    nextCells = {};
    tbody.replaceChildren(...models.map((m) => el("tr", { class: m.name === page.selected ? "selected" : "", "data-model": m.name },
      modelHeader(m), hosts.map((h) => cellNode(m, h, (s.cells[m.name] || {})[h.name])))));
    previousCells = nextCells;
    $("nogrid").hidden = s.models.length + s.hosts.length > 0;
  }

  // -- model details and history ---------------------------------------------------------------
  function select(model) {
    page.selected = page.selected === model ? null : model;
    history = { model: page.selected, sequence: null, data: null, error: null };
    render();
    if (page.selected) $("detail").scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  function fetchHistory(model, sequence) {
    history.sequence = sequence;
    fetch(`api/history/${encodeURIComponent(model)}?limit=20`, { cache: "no-store" })
      .then((r) => r.json().then((body) => (r.ok ? body : Promise.reject(new Error(body.error || r.statusText)))))
      .then((body) => { if (history.model === model) { history.data = body; history.error = null; renderDetail(page.state); } })
      .catch((e) => { if (history.model === model) { history.error = String(e.message || e); renderDetail(page.state); } });
  }

  function kv(pairs) {
    return el("dl", { class: "kv" }, pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)]));
  }

  function renderHistory() {
    if (history.error) return el("div", { class: "cellerr", text: `history unavailable: ${history.error}` });
    if (!history.data) return el("div", { class: "empty", text: "loading…" });
    if (!history.data.entries.length) return el("div", { class: "empty", text: "no history entries" });
    return el("div", {},
      el("div", { class: "small", text: history.data.total === null ? `newest ${history.data.entries.length} entries` : `newest ${history.data.entries.length} of ${history.data.total} entries` }),
      el("ul", { class: "hist", id: "history" }, history.data.entries.map((e) => e.error
        ? el("li", { class: "cellerr", text: e.error })
        : el("li", { "data-sequence": e.sequence },
          el("div", {}, el("span", { class: "what", text: `#${e.sequence} ${e.action}` }),
            ` ${when(e.at)} by ${e.author || "(unknown)"} via ${e.source}`, el("span", { class: "small", text: ` · revision ${e.revision}` })),
          e.changes.map((c) => el("div", { class: "chg mono" }, `${c.path}: `, el("span", { class: "old", text: json(c.old) }), " → ", el("span", { class: "new", text: json(c.new) }))),
        ))));
  }

  function renderDetail(s) {
    const box = $("detail");
    const m = s && page.selected ? s.models.find((x) => x.name === page.selected) : null;
    if (!page.selected) { box.hidden = true; box.replaceChildren(); return; }
    box.hidden = false;
    // a new intent revision means a new history entry: read the newest entries again
    if (m && history.data === null && history.sequence === null) fetchHistory(m.name, m.intent_revision);
    else if (m && history.sequence !== m.intent_revision) fetchHistory(m.name, m.intent_revision);
    const i = m && m.intent;
    const left = [el("h3", { text: "Intent" })];
    if (!m) left.push(el("div", { class: "empty", text: "this model is no longer in etcd" }));
    else if (!i) left.push(el("div", { class: "empty", text: m.managed ? "no valid intent" : "no intent: assignments were written by hand" }));
    else left.push(kv([
      ["versions", i.policy], ["labels", labelTags(i.labels)], ["replicas", String(i.replicas)], ["strategy", i.strategy + (i.promote ? " (promote)" : "") + (i.abort ? " (abort)" : "")],
      ["host selector", Object.entries(i.host_selector).map(([k, v]) => `${k}=${v}`).join(", ")], ["spread by", i.spread_by], ["memory", i.memory_mb ? `${i.memory_mb} MB` : null],
      ["base path", el("span", { class: "mono", text: i.base_path })], ["owner", i.owner], ["description", i.description],
      ["registered", m.versions_registered.length ? m.versions_registered.join(", ") : null],
    ]));
    if (m) {
      left.push(el("h3", { text: "Status" }), kv([
        ["health", `${m.health}${m.health_reason ? ": " + m.health_reason : ""}`],
        ["serving", `${m.serving_replicas}/${m.wanted_replicas}`],
        ["ready", `${m.ready_replicas}/${m.wanted_replicas}`],
        ["available", Object.entries(m.available).map(([v, n]) => `v${v}: ${n}`).join(", ") || "none"],
        ["rollout", m.rollout ? `${m.rollout.phase}${m.rollout.reason ? ": " + m.rollout.reason : ""}` : null],
        ["error", m.error ? el("span", { class: "cellerr", text: m.error }) : null],
        ["reasons", m.reasons.length ? el("ul", { class: "plist" }, m.reasons.map((r) => el("li", { text: r }))) : null],
        ["failures", m.failures.length ? el("ul", { class: "plist" }, m.failures.map((f) => el("li", { text: `v${f.version} on ${f.host}: ${f.error} (retry after ${when(f.retry_after)})` }))) : null],
        ["replicas", m.replicas.length ? el("ul", { class: "plist" }, m.replicas.map((r) => el("li", {}, el("b", { text: r.host }), " ",
          Object.entries(r.versions).map(([v, st]) => chip(v, { state: st })), labelTags(r.labels), r.ready ? "" : el("span", { class: "tag warn", text: "not ready" }), r.canary ? el("span", { class: "tag phase", text: "canary" }) : null))) : null],
        ["reported", when(m.status_updated_at)],
      ]));
    }
    box.replaceChildren(
      el("div", { class: "head" }, el("h2", { text: page.selected }), el("button", { class: "close", text: "close", onclick: () => select(page.selected) })),
      el("div", { class: "cols" }, el("div", {}, left), el("div", {}, el("h3", { text: "History" }), renderHistory())),
    );
  }

  // -- updates --------------------------------------------------------------------------------
  function render() {
    const s = page.state;
    if (!s) return;
    renderHeader(s);
    renderSummary(s);
    renderRollouts(s);
    renderErrors(s);
    renderGrid(s);
    renderDetail(s);
  }

  function applyPatch(state, patch) {
    if (!state) return null;  // a patch before any state: the state follows when the stream reopens
    for (const [key, value] of Object.entries(patch)) if (key !== "models") state[key] = value;
    if (patch.models) {
      const byName = new Map(state.models.map((m) => [m.name, m]));
      for (const [name, part] of Object.entries(patch.models)) {
        if (part === null) { byName.delete(name); delete state.cells[name]; }
        else { byName.set(name, part.model); state.cells[name] = part.cells; }
      }
      state.models = [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    }
    return state;
  }

  function setLive(text, cls) {
    const live = $("live");
    live.textContent = text;
    live.className = `pill ${cls}`;
  }

  function connect() {
    const source = new EventSource("api/events");
    source.addEventListener("open", () => setLive("connected", "wait"));
    source.addEventListener("error", () => setLive("reconnecting…", "down"));
    // the whole state when the stream (re)opens, then patches: changed top-level parts, and
    // per model its entry and row of cells (null: gone). Every value in a patch is absolute.
    source.addEventListener("state", (event) => update(JSON.parse(event.data)));
    source.addEventListener("patch", (event) => { page.patches += 1; update(applyPatch(page.state, JSON.parse(event.data))); });
    function update(state) {
      if (!state) return;
      page.state = state;
      page.updates += 1;
      if (page.state.dashboard && page.state.dashboard.etcd_error) setLive("etcd unreachable", "down");
      else setLive("live", "live");
      render();
    }
    page.source = source;
  }

  $("filter").addEventListener("input", () => { previousCells = {}; render(); });
  connect();
})();
