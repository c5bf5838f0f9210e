// The API reference: renders the OpenAPI document (/openapi.json) and the
// AsyncAPI event catalogue (/asyncapi.json) that the gateway serves. Both
// are generated from the protos. Everything is built with DOM calls and
// textContent, never markup from the documents, under the pages' strict
// Content Security Policy.

const $ = (sel) => document.querySelector(sel);

// el builds an element: el("p", {class: "x"}, "text", child, ...).
function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k.startsWith("data-")) e.dataset[k.slice(5).replace(/-(.)/g, (_, c) => c.toUpperCase())] = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

// rich turns text with `code` spans and blank-line paragraphs into nodes.
function rich(text, tag = "p") {
  if (!text) return [];
  return String(text).split(/\n\s*\n/).map((para) =>
    el(tag, {class: "prose"}, para.split("`").map((part, i) => (i % 2 ? el("code", {}, part) : part))));
}

// anchor makes a string safe to use in an id.
const anchor = (s) => String(s).replace(/[^A-Za-z0-9_.-]+/g, "-");

const schemaPrefixes = ["#/components/schemas/"];

// refName returns the schema name a $ref points at, or "".
function refName(ref) {
  for (const p of schemaPrefixes) if (ref && ref.startsWith(p)) return ref.slice(p.length);
  return "";
}

const shortName = (full) => full.split(".").pop();

// typeOf describes a schema in a few words, linking named schemas.
function typeOf(s) {
  if (!s || typeof s !== "object") return "any";
  if (s.$ref) {
    const name = refName(s.$ref);
    return el("a", {href: "#schema-" + anchor(name), class: "type", title: name}, shortName(name));
  }
  if (s.allOf && s.allOf.length === 1) return typeOf(s.allOf[0]);
  if (s.oneOf) return el("span", {}, "one of ", join(s.oneOf.map(typeOf), " | "));
  if (s.type === "array") return el("span", {}, "array of ", typeOf(s.items));
  if (s.type === "object" && s.additionalProperties && typeof s.additionalProperties === "object") {
    return el("span", {}, "map of ", typeOf(s.additionalProperties));
  }
  let t = s.type || "any";
  if (s.format) t += " (" + s.format + ")";
  if (s.const !== undefined) return el("span", {}, t + " = ", el("code", {}, String(s.const)));
  if (s.enum) return el("span", {}, t + ": ", join(s.enum.map((v) => el("code", {}, String(v))), ", "));
  return el("span", {class: "type"}, t);
}

function join(nodes, sep) {
  const out = [];
  nodes.forEach((n, i) => {
    if (i) out.push(sep);
    out.push(n);
  });
  return out;
}

// fieldsTable lists an object schema's properties.
function fieldsTable(schema, label = "Field") {
  const props = Object.entries(schema.properties || {});
  if (!props.length) return el("p", {class: "muted"}, "No fields.");
  const required = new Set(schema.required || []);
  return el("table", {class: "fields"},
    el("thead", {}, el("tr", {}, el("th", {}, label), el("th", {}, "Type"), el("th", {}, "Description"))),
    el("tbody", {}, props.map(([name, p]) => el("tr", {"data-field": name},
      el("td", {}, el("code", {}, name), required.has(name) ? el("span", {class: "req"}, " required") : ""),
      el("td", {}, typeOf(p)),
      el("td", {}, rich(p.description || (p.allOf && p.allOf[0] && p.allOf[0].description) || ""))))));
}

// bodySchema shows a request or response body: a link to its named schema
// or the fields of an inline one.
function bodySchema(schema) {
  if (!schema) return el("p", {class: "muted"}, "No body.");
  if (schema.type === "object" && schema.properties && !schema.$ref) {
    return el("div", {}, rich(schema.description), fieldsTable(schema));
  }
  return el("p", {}, typeOf(schema));
}

// rest returns text without its first sentence when that is the summary
// already shown.
function rest(text, summary) {
  if (!text) return "";
  return summary && text.startsWith(summary) ? text.slice(summary.length).trim() : text;
}

// ---- REST ----

const methods = ["get", "put", "post", "patch", "delete"];

function renderREST(doc) {
  const sec = $("#rest");
  const info = doc.info || {};
  sec.append(el("h2", {id: "h-rest"}, "REST API"), ...rich(info.description));
  const server = (doc.servers || [])[0];
  if (server) {
    const origin = (server.variables && server.variables.origin && server.variables.origin.default) || server.url;
    sec.append(el("p", {class: "muted"}, "Base address: ", el("code", {}, origin), " (", server.description || "", ")"));
  }
  const schemes = (doc.components && doc.components.securitySchemes) || {};
  for (const [name, s] of Object.entries(schemes)) {
    sec.append(el("p", {class: "muted"}, "Credential ", el("code", {}, name), ": ", s.type === "http" ? "Authorization: " + s.scheme[0].toUpperCase() + s.scheme.slice(1) + " <token>" : s.type, ". ", s.description || ""));
  }
  const responses = (doc.components && doc.components.responses) || {};
  const ops = [];
  for (const [path, item] of Object.entries(doc.paths || {})) {
    for (const m of methods) if (item[m]) ops.push({path, method: m, op: item[m]});
  }
  const toc = [];
  for (const tag of doc.tags || []) {
    const mine = ops.filter((o) => (o.op.tags || []).includes(tag.name));
    if (!mine.length) continue;
    const id = "tag-" + anchor(tag.name);
    const group = el("section", {class: "group", id});
    group.append(el("h3", {}, tag.name), ...rich(tag.description));
    for (const o of mine) group.append(renderOperation(o, doc, responses));
    sec.append(group);
    toc.push(el("li", {}, el("a", {href: "#" + id}, tag.name),
      el("ul", {}, mine.map((o) => el("li", {"data-filter-item": true},
        el("a", {href: "#op-" + anchor(o.op.operationId)}, el("span", {class: "verb " + o.method}, o.method.toUpperCase()), " ", o.path))))));
  }
  sec.hidden = false;
  return el("li", {}, el("a", {href: "#rest"}, "REST API"), el("ul", {}, toc));
}

function renderOperation({path, method, op}, doc, responses) {
  const route = method.toUpperCase() + " " + path;
  const security = op.security !== undefined ? op.security : doc.security || [];
  const isPublic = security.length === 0 || security.some((r) => Object.keys(r).length === 0);
  const art = el("article", {class: "op filterable", id: "op-" + anchor(op.operationId), "data-route": route},
    el("h4", {},
      el("span", {class: "verb " + method}, method.toUpperCase()), " ",
      el("code", {class: "path"}, path), " ",
      el("span", {class: isPublic ? "badge public" : "badge auth"}, isPublic ? "public" : "credential")),
    el("p", {class: "summary"}, op.summary || ""),
    rich(rest(op.description, op.summary)),
    el("p", {class: "muted opid"}, "gRPC: ", el("code", {}, op.operationId.replace("_", "/"))));

  const params = op.parameters || [];
  if (params.length) {
    art.append(el("h5", {}, "Parameters"), el("table", {class: "fields"},
      el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "In"), el("th", {}, "Type"), el("th", {}, "Description"))),
      el("tbody", {}, params.map((p) => el("tr", {},
        el("td", {}, el("code", {}, p.name), p.required ? el("span", {class: "req"}, " required") : ""),
        el("td", {}, p.in),
        el("td", {}, typeOf(p.schema)),
        el("td", {}, rich(p.description)))))));
  }
  if (op.requestBody) {
    const content = op.requestBody.content || {};
    const [type, media] = Object.entries(content)[0] || ["", {}];
    art.append(el("h5", {}, "Request body ", el("span", {class: "muted"}, type)), bodySchema(media.schema));
  }
  art.append(el("h5", {}, "Responses"));
  const list = el("dl", {class: "responses"});
  const codes = Object.keys(op.responses || {}).sort();
  for (const code of codes) {
    let r = op.responses[code];
    if (r.$ref) r = responses[r.$ref.split("/").pop()] || {};
    const content = r.content || {};
    const [type, media] = Object.entries(content)[0] || ["", null];
    list.append(
      el("dt", {class: "code c" + code[0], "data-status": code}, code),
      el("dd", {},
        rich(r.description),
        media ? el("p", {class: "muted"}, type + ": ", media.schema && media.schema.properties && !media.schema.$ref
          ? join(Object.entries(media.schema.properties).map(([k, v]) => el("span", {}, el("code", {}, k), " ", typeOf(v))), ", ")
          : typeOf(media.schema)) : "",
        r.headers ? el("p", {class: "muted"}, "Headers: ", join(Object.keys(r.headers).map((h) => el("code", {}, h)), ", ")) : ""));
  }
  art.append(list);
  return art;
}

// ---- Events ----

function resolve(doc, ref) {
  let node = doc;
  for (const part of ref.replace(/^#\//, "").split("/")) node = node && node[part.replace(/~1/g, "/").replace(/~0/g, "~")];
  return node;
}

function renderEvents(doc) {
  const sec = $("#events");
  const info = doc.info || {};
  sec.append(el("h2", {id: "h-events"}, "Events"), ...rich(info.description));
  for (const [name, s] of Object.entries(doc.servers || {})) {
    sec.append(el("p", {class: "muted"}, "Server ", el("code", {}, name), ": ", el("code", {}, s.protocol + "://" + s.host), ". ", s.description || ""));
  }
  const ops = Object.entries(doc.operations || {});
  const toc = [];
  for (const [id, ch] of Object.entries(doc.channels || {})) {
    const art = el("article", {class: "channel filterable", id: "channel-" + anchor(id), "data-channel": ch.address},
      el("h3", {}, el("code", {class: "path"}, ch.address)),
      el("p", {class: "muted"}, ch.title || ""),
      rich(ch.summary), rich(ch.description));
    const params = Object.entries(ch.parameters || {});
    if (params.length) {
      art.append(el("h5", {}, "Subject parameters"), el("table", {class: "fields"},
        el("thead", {}, el("tr", {}, el("th", {}, "Name"), el("th", {}, "Values"), el("th", {}, "Description"))),
        el("tbody", {}, params.map(([n, p]) => el("tr", {},
          el("td", {}, el("code", {}, "{" + n + "}")),
          el("td", {}, p.enum ? join(p.enum.map((v) => el("code", {}, v)), ", ") : "any"),
          el("td", {}, rich(p.description)))))));
    }
    for (const ref of Object.values(ch.messages || {})) {
      art.append(renderMessage(ref.$ref ? resolve(doc, ref.$ref) : ref));
    }
    const mine = ops.filter(([, o]) => o.channel && o.channel.$ref === "#/channels/" + id);
    const send = mine.filter(([, o]) => o.action === "send");
    const receive = mine.filter(([, o]) => o.action === "receive");
    if (send.length) art.append(el("h5", {}, "Published by"), el("ul", {class: "ops"}, send.map(renderEventOp)));
    if (receive.length) art.append(el("h5", {}, "Consumed by"), el("ul", {class: "ops"}, receive.map(renderEventOp)));
    sec.append(art);
    toc.push(el("li", {"data-filter-item": true}, el("a", {href: "#channel-" + anchor(id)}, ch.address)));
  }
  sec.hidden = false;
  return el("li", {}, el("a", {href: "#events"}, "Events"), el("ul", {}, toc));
}

function renderMessage(m) {
  const art = el("section", {class: "event", "data-event": m.name, id: "event-" + anchor(m.name)},
    el("h4", {}, "Message ", el("code", {}, m.name), " ", el("span", {class: "muted"}, m.contentType || "")),
    rich(m.description || m.summary));
  if (m.headers) art.append(el("h5", {}, "Headers"), fieldsTable(m.headers, "Header"));
  if (m.payload) {
    art.append(el("h5", {}, "Payload ", el("span", {class: "muted"}, "(protobuf; its JSON form)")), el("p", {}, typeOf(m.payload)));
  }
  return art;
}

function renderEventOp([id, o]) {
  const c = o["x-pizzashop-consumer"];
  return el("li", {id: "eventop-" + anchor(id), "data-operation": id, "data-consumer": c ? c.durable : undefined},
    el("strong", {}, o.title || id),
    rich(o.summary), rich(o.description));
}

// ---- Schemas ----

function renderSchemas(...docs) {
  const sec = $("#schemas");
  sec.append(el("h2", {id: "h-schemas"}, "Schemas"),
    el("p", {class: "muted"}, "Every message in its JSON form: fields in lowerCamelCase, enums by name, 64-bit integers as strings, times in RFC 3339."));
  const all = new Map();
  for (const d of docs) {
    for (const [name, s] of Object.entries((d.components && d.components.schemas) || {})) if (!all.has(name)) all.set(name, s);
  }
  const names = [...all.keys()].sort();
  for (const name of names) {
    const s = all.get(name);
    const art = el("article", {class: "schema filterable", id: "schema-" + anchor(name), "data-schema": name},
      el("h4", {}, el("code", {}, shortName(name)), " ", el("span", {class: "muted"}, name)));
    if (s.enum) {
      art.append(...rich(s.description), el("p", {}, join(s.enum.map((v) => el("code", {}, v)), ", ")));
    } else if (s.type === "object" || s.properties) {
      art.append(...rich(s.description), fieldsTable(s));
    } else {
      art.append(...rich(s.description), el("p", {}, typeOf(s)));
    }
    sec.append(art);
  }
  sec.hidden = false;
  return el("li", {}, el("a", {href: "#schemas"}, "Schemas (" + names.length + ")"));
}

// ---- Filter ----

function applyFilter(q) {
  q = q.trim().toLowerCase();
  for (const e of document.querySelectorAll(".filterable")) {
    e.hidden = q !== "" && !e.textContent.toLowerCase().includes(q);
  }
  for (const g of document.querySelectorAll(".group")) {
    g.hidden = q !== "" && !g.querySelector(".op:not([hidden])");
  }
}

async function fetchJSON(url) {
  const resp = await fetch(url, {headers: {Accept: "application/json"}});
  if (!resp.ok) throw new Error(`${url}: HTTP ${resp.status}`);
  return resp.json();
}

async function main() {
  try {
    const [openapi, asyncapi] = await Promise.all([fetchJSON("/openapi.json"), fetchJSON("/asyncapi.json")]);
    const toc = el("ul", {}, renderREST(openapi), renderEvents(asyncapi), renderSchemas(openapi, asyncapi));
    $("#toc").append(toc);
    $("#loading").hidden = true;
    const filter = $("#filter");
    filter.addEventListener("input", () => applyFilter(filter.value));
    if (location.hash) {
      const target = document.getElementById(decodeURIComponent(location.hash.slice(1)));
      if (target) target.scrollIntoView();
    }
    document.body.dataset.ready = "true";
  } catch (err) {
    $("#loading").hidden = true;
    const e = $("#load-error");
    e.textContent = "Could not load the API documents: " + err.message;
    e.hidden = false;
    document.body.dataset.ready = "error";
  }
}

main();
