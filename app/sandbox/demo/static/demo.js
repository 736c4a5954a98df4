// Sandbox demo: an example of a company's own onboarding UI on the public /v1 API.
//
// Everything here is what your frontend (or its backend) would do:
//   GET  /v1/me, /v1/end-users, PUT /v1/end-users/{id}
//   GET  /v1/sources, /v1/sources/{service}   (render a form from config_schema)
//   POST /v1/connections                     (credential sources)
//   POST /v1/connect-sessions                (OAuth sources: send the browser to connect_url)
//   POST /v1/connections/{id}/connect-card   (card sources: send the browser to Fivetran's card)
//   GET  /v1/connections?end_user=, /v1/connections/{id}, /v1/events?connection_id=
//   POST /v1/connections/{id}/sync, /reauthorize; DELETE /v1/connections/{id}
//   GET  /v1/connections/{id}/options, POST /v1/connections/{id}/configure (account pickers:
//        the choice after consent, e.g. Google Ads customer ids, Facebook ad accounts)
// Two things are sandbox-only: POST /sandbox/demo/key (this page's demo-scoped key, loopback
// only) and the simulator's control API (/sandbox/fivetran/_control/...) behind the
// "Sandbox:" buttons. In production your backend holds the API key, never the browser.
"use strict";

const STORE = { key: "pbf-demo-key", pasted: "pbf-demo-key-pasted", endUser: "pbf-demo-end-user",
  connection: "pbf-demo-connection" };
const POLL_MS = 2000;
const MAX_LISTED = 25;
const RETURN_TO = `${location.origin}/sandbox/demo`;

const state = {
  key: null, me: null, sources: [], endUser: "", connections: [], connection: null,
  events: [], pollTimer: null, source: null, rendered: null, confirmDelete: null, picker: null,
};

const $ = (id) => document.getElementById(id);

// Build DOM nodes from data: text always goes through textContent, never HTML.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name.startsWith("aria-")) node.setAttribute(name, String(Boolean(value) && value));
    else if (value === null || value === undefined || value === false) continue;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

class ApiError extends Error {
  constructor(status, problem) {
    const title = problem && (problem.detail || problem.title);
    super(title ? `${title}` : `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function notice(text, kind = "ok") {
  const box = $("notice");
  box.hidden = false;
  box.className = kind;
  box.textContent = text;
}

function showError(err) {
  const extra = (err.problem && err.problem.errors || [])
    .map((e) => `${e.field}: ${e.message}`).join("; ");
  notice(`${err.message}${extra ? ` (${extra})` : ""}`, "error");
}

// ---- API key ------------------------------------------------------------------------------

async function obtainDemoKey() {
  // Same-origin POST: the browser adds Origin and Sec-Fetch-Site, which the server checks.
  const r = await fetch("/sandbox/demo/key", { method: "POST", headers: { Accept: "application/json" } });
  const body = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, body);
  state.key = body.key;
  sessionStorage.setItem(STORE.key, body.key);
  sessionStorage.removeItem(STORE.pasted);
}

async function api(method, path, body, extra = {}, retried = false) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${state.key}`, ...extra };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const r = await fetch(path, init);
  if (r.status === 401 && !retried && !sessionStorage.getItem(STORE.pasted)) {
    await obtainDemoKey(); // the server restarted or the key was revoked: get the current one
    return api(method, path, body, extra, true);
  }
  const data = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

async function listAll(path) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api("GET", cursor ? `${path}${sep}cursor=${encodeURIComponent(cursor)}` : path);
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

async function loadMe() {
  state.me = await api("GET", "/v1/me");
  const me = state.me;
  const pasted = sessionStorage.getItem(STORE.pasted);
  $("key-status").textContent = `${pasted ? "Your key" : "Demo key"} ${me.name} · scopes ${me.scopes.join(", ")}` +
    (me.end_user_prefix ? ` · end-users "${me.end_user_prefix}…" only` : " · all end-users");
  $("end-user-prefix").textContent = me.end_user_prefix || "";
}

// ---- end-users ----------------------------------------------------------------------------

async function loadEndUsers() {
  const users = await listAll("/v1/end-users?limit=100");
  const select = $("end-user-select");
  select.replaceChildren(el("option", { value: "", text: "—" }));
  for (const u of users.filter((u) => u.status === "active")) {
    select.append(el("option", { value: u.external_id, text: u.name ? `${u.name} (${u.external_id})` : u.external_id }));
  }
  if (state.endUser && users.some((u) => u.external_id === state.endUser)) select.value = state.endUser;
  else state.endUser = "";
}

async function chooseEndUser(id) {
  state.endUser = id;
  sessionStorage.setItem(STORE.endUser, id);
  $("end-user-select").value = id;
  for (const s of document.querySelectorAll(".needs-end-user")) s.classList.toggle("disabled", !id);
  selectConnection(null);
  await loadConnections();
}

async function createEndUser(ev) {
  ev.preventDefault();
  const prefix = (state.me && state.me.end_user_prefix) || "";
  let id = $("end-user-id").value.trim();
  if (prefix && !id.startsWith(prefix)) id = prefix + id;
  const name = $("end-user-name").value.trim();
  try {
    const user = await api("PUT", `/v1/end-users/${encodeURIComponent(id)}`, name ? { name } : {});
    state.endUser = user.external_id;
    await loadEndUsers();
    await chooseEndUser(user.external_id);
    $("end-user-form").reset();
    notice(`End-user ${user.external_id} is ready (Fivetran group ${user.fivetran_group_id}).`);
  } catch (err) { showError(err); }
}

// ---- sources ------------------------------------------------------------------------------

async function loadSources() {
  state.sources = await listAll("/v1/sources");
  renderSources();
}

function renderSources() {
  const q = $("source-search").value.trim().toLowerCase();
  const hits = state.sources.filter((s) => !q || s.name.toLowerCase().includes(q) || s.service.includes(q));
  $("source-count").textContent = `${hits.length} of ${state.sources.length} sources` +
    (hits.length > MAX_LISTED ? ` (first ${MAX_LISTED} shown)` : "");
  $("source-list").replaceChildren(...hits.slice(0, MAX_LISTED).map((s) => el("li", {},
    el("button", { type: "button", "aria-pressed": state.source && state.source.service === s.service && state.source.auth_method === s.auth_method,
      onclick: () => chooseSource(s.service, s.auth_method) },
      el("span", { text: s.name }), el("span", { class: "badge", text: { oauth2: "sign in", oauth1: "sign in", connect_card: "Fivetran card" }[s.auth_method] || "credentials" })))));
}

async function chooseSource(service, authMethod) {
  try {
    // The one-source read gives the JSON schema to render (the contract of GET /v1/sources/{service}).
    // A service may be offered both ways (sign in, or credentials): ask for the one picked.
    const source = await api("GET", `/v1/sources/${encodeURIComponent(service)}?auth_method=${encodeURIComponent(authMethod)}`);
    state.source = source;
    renderSources();
    renderSourceDetail();
  } catch (err) { showError(err); }
}

function humanize(name) {
  const text = name.replace(/_/g, " ");
  return text.charAt(0).toUpperCase() + text.slice(1);
}

// One input per schema property: enum → select, boolean → checkbox, integer/number → number,
// secret (writeOnly / format password) → password, other strings → text; anything nested or
// an array → a JSON text area. Returns the fields (for reading values back).
function schemaFields(schema, container) {
  const required = new Set(schema.required || []);
  const props = Object.entries(schema.properties || {});
  const fields = [];
  const optional = el("div");
  // Required fields first, in the order the schema lists them as required (host, port, …).
  const order = [...required];
  const first = props.filter(([n]) => required.has(n)).sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
  for (const [name, prop] of [...first, ...props.filter(([n]) => !required.has(n))]) {
    const id = `field-${name}`;
    const isReq = required.has(name);
    const type = Array.isArray(prop.type) ? prop.type.find((t) => t !== "null") : prop.type;
    const label = `${prop.title || humanize(name)}${isReq ? " *" : ""}`;
    const help = prop.description ? el("small", { class: "help", text: prop.description }) : null;
    let input;
    let kind = "text";
    if (Array.isArray(prop.enum)) {
      kind = "enum";
      input = el("select", { id, name, required: isReq },
        el("option", { value: "", text: isReq ? "Choose…" : "(default)" }),
        prop.enum.map((v) => el("option", { value: JSON.stringify(v), text: String(v), selected: prop.default === v })));
    } else if (type === "boolean") {
      kind = "boolean";
      input = el("input", { id, name, type: "checkbox", checked: prop.default === true });
    } else if (type === "integer" || type === "number") {
      kind = type;
      input = el("input", { id, name, type: "number", required: isReq, step: type === "integer" ? 1 : "any",
        min: prop.minimum, max: prop.maximum, value: prop.default });
    } else if (type === "string" || type === undefined && !prop.properties && !prop.items) {
      const secret = prop.writeOnly || prop.format === "password";
      input = el("input", { id, name, type: secret ? "password" : "text", required: isReq,
        autocomplete: secret ? "new-password" : "off", pattern: prop.pattern, maxlength: prop.maxLength,
        placeholder: (prop.examples && prop.examples[0]) || "", value: prop.default });
    } else {
      kind = "json";
      input = el("textarea", { id, name, rows: 3, required: isReq, placeholder: type === "array" ? "[ … ] (JSON)" : "{ … } (JSON)" });
    }
    const row = kind === "boolean"
      ? el("div", {}, el("label", { class: "check", for: id }, input, label), help)
      : el("div", {}, el("label", { for: id, text: label }), help, input);
    (isReq ? container : optional).append(row);
    fields.push({ name, kind, input, required: isReq, prop });
  }
  if (optional.childElementCount) {
    container.append(el("details", { class: "optional" },
      el("summary", { text: `Optional settings (${optional.childElementCount})` }), optional));
  }
  return fields;
}

function fieldValues(fields) {
  const config = {};
  for (const f of fields) {
    const raw = f.input.value;
    if (f.kind === "boolean") {
      if (f.input.checked !== (f.prop.default === true)) config[f.name] = f.input.checked;
    } else if (raw.trim() === "") {
      continue; // not filled: the server applies defaults
    } else if (f.kind === "enum" || f.kind === "json") {
      config[f.name] = JSON.parse(raw);
    } else if (f.kind === "integer" || f.kind === "number") {
      config[f.name] = Number(raw);
    } else {
      config[f.name] = raw;
    }
  }
  return config;
}

function renderSourceDetail() {
  const s = state.source;
  const box = $("source-detail");
  if (!s) { box.replaceChildren(); return; }
  const oauth = s.auth_method === "oauth2" || s.auth_method === "oauth1";
  const card = s.auth_method === "connect_card";
  const form = el("form", { id: "source-form", novalidate: false });
  form.append(el("h3", { text: s.name }),
    el("p", { class: "muted", text: oauth
      ? `Sign in with ${s.name}: you will confirm, then approve access (scopes: ${(s.scopes || []).join(", ") || "none"}), and come back here.`
      : card
        ? `${s.reason}. You will set it up in Fivetran's Connect Card and come back here.`
        : `Fill in the connection details of ${s.name}. Secrets are write-only: they are never shown again.` }));
  const fields = schemaFields(s.config_schema || {}, form);
  const error = el("p", { class: "form-error", role: "alert" });
  form.append(error, el("button", { type: "submit", text: oauth || card ? `Connect ${s.name}` : `Create ${s.name} connection` }));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    let config;
    try { config = fieldValues(fields); } catch (e) { error.textContent = `Invalid JSON: ${e.message}`; return; }
    try {
      if (oauth) {
        const session = await api("POST", "/v1/connect-sessions",
          { end_user: state.endUser, service: s.service, return_to: RETURN_TO, ...(Object.keys(config).length ? { config } : {}) });
        sessionStorage.setItem(STORE.connection, session.connection_id || "");
        location.assign(session.connect_url); // a real navigation: confirmation, consent, back here
        return;
      }
      if (card) { // create (paused, no auth), then send the browser to Fivetran's card
        const made = await api("POST", "/v1/connections", { end_user: state.endUser, service: s.service, config, auth_method: "connect_card" });
        const issued = await api("POST", `/v1/connections/${encodeURIComponent(made.id)}/connect-card`, { return_to: RETURN_TO });
        location.assign(issued.connect_card_url);
        return;
      }
      const created = await api("POST", "/v1/connections", { end_user: state.endUser, service: s.service, config });
      notice(`${s.name} connection created: ${created.state}.`);
      state.source = null;
      renderSourceDetail();
      renderSources();
      await loadConnections();
      selectConnection(created.id);
    } catch (err) {
      const extra = (err.problem.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
      error.textContent = `${err.message}${extra ? ` — ${extra}` : ""}`;
    }
  });
  box.replaceChildren(form);
}

// ---- connections --------------------------------------------------------------------------

async function loadConnections() {
  if (!state.endUser) { state.connections = []; renderConnections(); return; }
  state.connections = await listAll(`/v1/connections?end_user=${encodeURIComponent(state.endUser)}`);
  renderConnections();
}

function stateBadge(value) {
  return el("span", { class: `badge state-${value}`, text: value });
}

function renderConnections() {
  const list = $("connection-list");
  if (!state.connections.length) {
    list.replaceChildren(el("li", { class: "muted", text: state.endUser ? "No connections yet." : "Pick an end-user first." }));
    return;
  }
  list.replaceChildren(...state.connections.map((c) => el("li", {},
    el("button", { type: "button", "aria-pressed": state.connection === c.id, "data-connection": c.id,
      onclick: () => selectConnection(c.id) }, el("span", { text: `${c.service} · ${c.id}` }), stateBadge(c.state)))));
}

function selectConnection(id) {
  state.connection = id;
  state.events = [];
  state.rendered = null;
  state.confirmDelete = null;
  if (id) sessionStorage.setItem(STORE.connection, id); else sessionStorage.removeItem(STORE.connection);
  clearTimeout(state.pollTimer);
  renderConnections();
  $("connection-detail").replaceChildren();
  if (id) poll();
}

// Watch the connection: our own state (GET /v1/connections/{id}, no Fivetran call per read)
// and its events, every POLL_MS while it is selected.
async function poll() {
  const id = state.connection;
  clearTimeout(state.pollTimer);
  if (!id) return;
  try {
    const [conn, events] = await Promise.all([
      api("GET", `/v1/connections/${encodeURIComponent(id)}`),
      api("GET", `/v1/events?connection_id=${encodeURIComponent(id)}&limit=200`),
    ]);
    if (state.connection !== id) return;
    state.events = events.items;
    const listed = state.connections.find((c) => c.id === id);
    if (listed) Object.assign(listed, conn); else state.connections.push(conn);
    // Re-render only on change: a redraw every poll would steal focus and eat clicks.
    if (conn.state === "needs_configuration" && (!state.picker || state.picker.connection !== id)) {
      await loadPicker(id);
    }
    const signature = JSON.stringify([conn, state.events.map((e) => e.id), state.confirmDelete, state.picker]);
    if (signature !== state.rendered) {
      state.rendered = signature;
      renderConnections();
      renderConnection(conn);
    }
    $("connection-updated").textContent = `Updated ${new Date().toLocaleTimeString()}; refreshes every ${POLL_MS / 1000} s.`;
  } catch (err) {
    if (err.status === 404) { renderGone(id); return; }
    showError(err);
  }
  if (state.connection === id) state.pollTimer = setTimeout(poll, POLL_MS);
}

// ---- account pickers: the choice after consent ----------------------------------------------
// GET /v1/connections/{id}/options lists what the end-user may sync (fetched from the source
// app with the connection's token); POST /v1/connections/{id}/configure submits the choice.

async function loadPicker(id) {
  state.picker = { connection: id, loading: true };
  try {
    const listed = await api("GET", `/v1/connections/${encodeURIComponent(id)}/options`);
    if (state.connection === id) state.picker = { connection: id, listed };
  } catch (err) {
    state.picker = { connection: id, error: err.message };
    showError(err);
  }
}

function renderPicker(c) {
  const picker = state.picker;
  if (!picker || picker.connection !== c.id) return null;
  if (picker.loading) return el("p", { class: "muted", text: "Loading the accounts…" });
  if (picker.error) {
    const retry = el("button", { type: "button", class: "secondary", text: "Try again" });
    retry.addEventListener("click", async () => { await loadPicker(c.id); state.rendered = null; poll(); });
    return el("div", { id: "picker" }, el("p", { class: "error", text: picker.error }), retry);
  }
  const listed = picker.listed;
  const form = el("form", { id: "picker", "aria-label": "Choose what to sync" });
  for (const field of listed.fields) {
    const selected = [].concat(listed.selected[field.name] || []);
    const options = listed.options[field.name].map((o, i) => {
      const input = el("input", { type: field.multiple ? "checkbox" : "radio", name: field.name,
        value: o.value, id: `pick-${field.name}-${i}` });
      input.checked = selected.includes(o.value);
      const text = o.label === o.value ? o.value : `${o.label} (${o.value})`;
      return el("li", {}, input, el("label", { for: input.id, text }));
    });
    form.append(el("fieldset", {}, el("legend", { text: field.title }),
      options.length ? el("ul", { class: "choices" }, options)
        : el("p", { class: "muted", text: "The source app lists nothing to choose." })));
  }
  const save = el("button", { type: "submit", text: c.state === "needs_configuration" ? "Connect these" : "Save selection" });
  form.append(save);
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const config = {};
    for (const field of listed.fields) {
      const values = [...form.querySelectorAll(`input[name="${CSS.escape(field.name)}"]:checked`)].map((i) => i.value);
      config[field.name] = field.multiple ? values : values[0];
    }
    act(save, "Saved: the connection is being set up with your choice.", async () => {
      await api("POST", `/v1/connections/${encodeURIComponent(c.id)}/configure`, { config },
        { "Idempotency-Key": `demo-${c.id}-${Date.now()}` });
      state.picker = null;
    });
  });
  return form;
}

function renderGone(id) {
  state.connections = state.connections.filter((c) => c.id !== id);
  renderConnections();
  $("connection-detail").replaceChildren(el("p", { class: "muted", text: `Connection ${id} is deleted.` }));
}

function fact(term, value) {
  return [el("dt", { text: term }), el("dd", {}, value === null || value === undefined || value === "" ? "—" : value)];
}

async function act(button, label, fn) {
  button.disabled = true;
  try { await fn(); notice(label); } catch (err) { showError(err); }
  finally { button.disabled = false; }
  poll();
}

function renderConnection(c) {
  const deleted = c.state === "deleted";
  const path = `/v1/connections/${encodeURIComponent(c.id)}`;
  const buttons = [];
  if (!deleted) {
    if (c.state !== "needs_configuration") {
      const sync = el("button", { type: "button", text: "Sync now" });
      sync.addEventListener("click", () => act(sync, "Sync triggered.", () => api("POST", `${path}/sync`, {})));
      buttons.push(sync);
    }
    if (c.fivetran_connection_id) {
      // Sandbox only: the simulator's control API plays Fivetran finishing the sync.
      const finish = el("button", { type: "button", class: "sandbox", text: "Sandbox: finish sync" });
      finish.addEventListener("click", () => act(finish, "Sandbox: the simulated sync finished.", () =>
        simulator(`connections/${encodeURIComponent(c.fivetran_connection_id)}/sync-result`, { status: "SUCCESSFUL" })));
      const brk = el("button", { type: "button", class: "sandbox", text: "Sandbox: break it" });
      brk.addEventListener("click", () => act(brk, "Sandbox: the source revoked access.", () =>
        simulator(`connections/${encodeURIComponent(c.fivetran_connection_id)}/break`, {})));
      buttons.push(finish, brk);
    }
    if (c.auth_method === "oauth2" && c.fivetran_connection_id && (!state.picker || state.picker.connection !== c.id)) {
      const change = el("button", { type: "button", class: "secondary", text: "Change accounts…" });
      change.addEventListener("click", async () => { await loadPicker(c.id); state.rendered = null; poll(); });
      buttons.push(change);
    }
    if (c.auth_method === "oauth2" || c.auth_method === "oauth1") {
      const reauth = el("button", { type: "button", class: "secondary", text: "Re-authorize" });
      reauth.addEventListener("click", async () => {
        try {
          const session = await api("POST", `${path}/reauthorize`, { return_to: RETURN_TO });
          location.assign(session.connect_url);
        } catch (err) { showError(err); }
      });
      buttons.push(reauth);
    }
    if (c.auth_method === "connect_card" && c.fivetran_connection_id) {
      const again = el("button", { type: "button", class: "secondary", text: "Set up in Fivetran's card" });
      again.addEventListener("click", async () => {
        try {
          const issued = await api("POST", `${path}/connect-card`, { return_to: RETURN_TO });
          location.assign(issued.connect_card_url);
        } catch (err) { showError(err); }
      });
      buttons.push(again);
    }
    const asking = state.confirmDelete === c.id;
    const del = el("button", { type: "button", class: "secondary", text: "Delete…", hidden: asking });
    const confirmDel = el("button", { type: "button", class: "danger", text: "Yes, delete this connection", hidden: !asking });
    del.addEventListener("click", () => { state.confirmDelete = c.id; confirmDel.hidden = false; del.hidden = true; });
    confirmDel.addEventListener("click", async () => {
      confirmDel.disabled = true;
      try {
        await api("DELETE", path);
        notice(`Connection ${c.id} deleted.`);
        await loadConnections();
      } catch (err) { showError(err); }
      poll();
    });
    buttons.push(del, confirmDel);
  }
  const events = [...state.events].reverse().map((e) => el("li", { "data-type": e.type },
    el("time", { datetime: e.created_at, text: new Date(e.created_at).toLocaleTimeString() }),
    el("strong", { text: e.type }), e.data && e.data.reason ? ` — ${e.data.reason}` : ""));
  const lastSync = c.last_sync_succeeded_at ? `succeeded ${new Date(c.last_sync_succeeded_at).toLocaleString()}`
    : c.last_sync_failed_at ? `failed ${new Date(c.last_sync_failed_at).toLocaleString()}` : "never";
  $("connection-detail").replaceChildren(
    el("h3", {}, `${c.service} `, stateBadge(c.state)),
    el("dl", { class: "facts", id: "connection-facts" },
      fact("id", c.id), fact("state", el("span", { id: "connection-state", text: c.state })),
      fact("reason", c.state_reason), fact("setup", c.setup_state),
      fact("sync", el("span", { id: "connection-sync", text: c.sync_state || "—" })),
      fact("last sync", el("span", { id: "connection-last-sync", text: lastSync })),
      fact("Fivetran id", c.fivetran_connection_id)),
    c.state === "needs_configuration" ? el("h4", { text: "Choose what to sync" }) : "",
    renderPicker(c) || "",
    el("div", { class: "actions" }, buttons),
    el("h4", { text: "Events" }),
    events.length ? el("ol", { class: "events", reversed: true, id: "events" }, events)
      : el("p", { class: "muted", text: "No events yet." }),
    el("p", { class: "muted", id: "connection-updated" }));
}

async function simulator(path, body) {
  const r = await fetch(`/sandbox/fivetran/_control/${path}`, {
    method: "POST", headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
  });
  const data = await r.json().catch(() => null);
  if (!r.ok) throw new ApiError(r.status, { detail: (data && data.message) || `simulator: HTTP ${r.status}` });
  return data;
}

// ---- coming back from connect_url (or Fivetran's card) ---------------------------------------------------------

function readReturn() {
  const q = new URLSearchParams(location.search);
  // connect sessions add session_id; Fivetran's card comes back with connection_id only
  if (!q.has("session_id") && !(q.has("status") && q.has("connection_id"))) return null;
  history.replaceState(null, "", location.pathname); // a reload must not show it again
  const back = { status: q.get("status"), connection: q.get("connection_id"), error: q.get("error") };
  if (back.status === "connected") notice(`Connected: connection ${back.connection}.`);
  else if (back.status === "needs_configuration") notice(`Almost done: choose what to sync for connection ${back.connection}.`);
  else notice(`Not connected: ${back.error || "unknown error"}.`, "error");
  return back;
}

// ---- start --------------------------------------------------------------------------------

async function useKey(key, pasted) {
  state.key = key;
  sessionStorage.setItem(STORE.key, key);
  if (pasted) sessionStorage.setItem(STORE.pasted, "1"); else sessionStorage.removeItem(STORE.pasted);
  await loadMe();
  await loadEndUsers();
  await chooseEndUser(state.endUser);
}

async function start() {
  $("end-user-form").addEventListener("submit", createEndUser);
  $("end-user-select").addEventListener("change", (ev) => chooseEndUser(ev.target.value).catch(showError));
  $("source-search").addEventListener("input", renderSources);
  $("key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    useKey($("key-input").value.trim(), true).catch(showError);
    $("key-input").value = "";
  });
  $("key-reset").addEventListener("click", () => obtainDemoKey().then(() => useKey(state.key, false)).catch(showError));
  const back = readReturn();
  try {
    state.key = sessionStorage.getItem(STORE.key);
    if (!state.key) await obtainDemoKey();
    await loadMe();
  } catch (err) {
    $("key-status").textContent = "No API key: paste one below.";
    showError(err);
    return;
  }
  state.endUser = sessionStorage.getItem(STORE.endUser) || "";
  try {
    await loadEndUsers();
    await chooseEndUser(state.endUser);
    const wanted = (back && back.connection) || sessionStorage.getItem(STORE.connection);
    if (wanted && state.connections.some((c) => c.id === wanted)) selectConnection(wanted);
    await loadSources();
  } catch (err) { showError(err); }
}

document.addEventListener("DOMContentLoaded", () => { start(); });
