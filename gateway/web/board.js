// Shared machinery of the kitchen display and the delivery board: the
// sign-in with a bearer token kept in sessionStorage, a live NDJSON stream
// read with fetch() that reconnects with backoff, a set of open items that
// catches up from the snapshot each (re)connection starts with, action calls,
// toasts, and a DOM helper that only ever inserts text.
//
// Data from the API reaches the DOM through textContent and attributes set
// one by one; no string is ever parsed as markup.

// Reconnect delays after a stream ends or fails: 1s, 2s, then 5s for good.
const BACKOFF_MS = [1000, 2000, 5000];
// How long a stream may stay silent before it counts as dead: three
// keep-alive periods.
const SILENCE_MS = 45000;

// gRPC codes that mean the token is no good for this page.
const UNAUTHENTICATED = 16;
const PERMISSION_DENIED = 7;
// gRPC codes that no retry can change: the item is not there, the path is bad.
const INVALID_ARGUMENT = 3;
const NOT_FOUND = 5;

/**
 * el builds an element. attrs: class, text (textContent), dataset (object),
 * and plain attributes; children: nodes or strings (as text).
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c); // append() turns strings into text nodes
  }
  return node;
}

/** ApiError is a failed call or stream, with the google.rpc.Status of it. */
export class ApiError extends Error {
  constructor(httpStatus, status) {
    super((status && status.message) || `HTTP ${httpStatus}`);
    this.httpStatus = httpStatus;
    this.code = status && typeof status.code === 'number' ? status.code : 0;
    this.details = (status && Array.isArray(status.details)) ? status.details : [];
  }

  /** fields lists the field violations of a google.rpc.BadRequest detail. */
  get fields() {
    const out = [];
    for (const d of this.details) {
      for (const v of (d && d.fieldViolations) || []) out.push({ field: v.field || '', message: v.description || '' });
    }
    return out;
  }

  /** reason is the ErrorInfo reason ("SIGN_IN_FAILED"), or ''. */
  get reason() {
    const info = this.details.find((d) => d && d.reason);
    return info ? info.reason : '';
  }

  /** permanent says that asking again cannot help: not found, or a bad request. */
  get permanent() {
    return this.httpStatus === 404 || this.httpStatus === 400 ||
      this.code === NOT_FOUND || this.code === INVALID_ARGUMENT;
  }

  get unauthorized() {
    return this.httpStatus === 401 || this.httpStatus === 403 ||
      this.code === UNAUTHENTICATED || this.code === PERMISSION_DENIED;
  }
}

export async function readError(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // not JSON: a proxy's error page, say
  }
  // A unary call fails with a Status; a stream that fails before its first
  // line with {"error": Status}.
  return new ApiError(resp.status, body && (body.error || body));
}

/** call POSTs body as JSON to path with the token and returns the JSON reply. */
export async function call(path, token, body = {}) {
  let resp;
  try {
    resp = await fetch(path, {
      method: 'POST',
      headers: { 'Authorization': 'Bearer ' + token, 'Content-Type': 'application/json' },
      body: JSON.stringify(body),
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, { message: 'network error: the gateway could not be reached' });
  }
  if (!resp.ok) throw await readError(resp);
  return resp.json();
}

/** toast shows a message for a few seconds (or until tapped); kind "error" shows it in red. */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const t = el('div', { class: 'toast ' + kind, role: kind === 'error' ? 'alert' : 'status', text: message });
  t.title = 'Tap to dismiss';
  t.addEventListener('click', () => t.remove());
  box.append(t);
  setTimeout(() => t.remove(), kind === 'error' ? 8000 : 5000);
}

/** session keeps the token of one role in this tab's sessionStorage. */
export function session(role) {
  const key = `pizzashop.${role}.token`;
  return {
    get: () => sessionStorage.getItem(key) || '',
    set: (t) => sessionStorage.setItem(key, t),
    clear: () => sessionStorage.removeItem(key),
  };
}

/**
 * watch reads the NDJSON stream at path until stop() is called. Each
 * (re)connection calls onOpen once the response arrives, onResult for every
 * {"result": ...} line and onBatch after each chunk of lines. A stream that
 * ends or fails is reopened after a backoff; onState("live" | "connecting" |
 * "down", detail) follows it. A refused token calls onUnauthorized and stops;
 * so does an error no retry can change (not found) when onFatal is given.
 */
export function watch(path, token, { onOpen, onResult, onBatch, onState, onUnauthorized, onFatal }) {
  let stopped = false;
  let ctrl = null;
  let attempt = 0;
  let wake = null; // resolves the current backoff early

  const sleep = (ms) => new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    wake = () => { clearTimeout(timer); resolve(); };
  });

  async function once() {
    ctrl = new AbortController();
    const resp = await fetch(path, {
      headers: { 'Authorization': 'Bearer ' + token, 'Accept': 'application/x-ndjson' },
      cache: 'no-store',
      signal: ctrl.signal,
    });
    if (!resp.ok) throw await readError(resp);
    onState('live');
    onOpen();
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    // The server sends a keep-alive line after 15s of silence; a longer
    // silence means the connection died quietly (a tablet's wifi), so drop
    // it and reconnect.
    let silence = null;
    const listen = () => {
      clearTimeout(silence);
      silence = setTimeout(() => ctrl.abort(), SILENCE_MS);
    };
    listen();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        listen();
        buf += value;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const msg = JSON.parse(line);
          if (msg.error) throw new ApiError(200, msg.error);
          if (msg.result) {
            attempt = 0; // the stream works: the next failure retries fast
            onResult(msg.result);
          }
        }
        onBatch();
      }
    } finally {
      clearTimeout(silence);
      onBatch(); // show what arrived before a failure
      ctrl.abort(); // and let go of the connection
    }
  }

  async function loop() {
    onState('connecting');
    while (!stopped) {
      let why = 'the stream ended';
      try {
        await once();
      } catch (err) {
        if (stopped) return;
        if (err instanceof ApiError && err.unauthorized) {
          stopped = true;
          onUnauthorized(err);
          return;
        }
        if (onFatal && err instanceof ApiError && err.permanent) {
          stopped = true;
          onFatal(err);
          return;
        }
        why = err instanceof ApiError ? err.message : 'network error';
      }
      if (stopped) return;
      const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      attempt++;
      onState('down', `Connection lost (${why}). Reconnecting in ${delay / 1000}s…`);
      await sleep(delay);
      if (!stopped) onState('connecting');
    }
  }

  // Back online: skip the rest of the backoff.
  const online = () => wake && wake();
  window.addEventListener('online', online);
  loop();

  return function stop() {
    stopped = true;
    window.removeEventListener('online', online);
    if (ctrl) ctrl.abort();
    if (wake) wake();
  };
}

/**
 * LiveSet holds the open items of a stream by id. Every (re)connection, and
 * any snapshot the server sends mid-stream, starts a snapshot; the server
 * ends it with a snapshotComplete line, and items it did not re-send are
 * then dropped: they closed while the page was not listening. A change older
 * than what the page has (a lower revision) is ignored, so a late line never
 * moves an item backwards.
 */
export class LiveSet {
  /**
   * isOpen(item) says whether the item belongs on the board; onClosed(item)
   * is told of items that left it.
   */
  constructor({ isOpen, onClosed }) {
    this.isOpen = isOpen;
    this.onClosed = onClosed;
    this.items = new Map();
    this.revisions = new Map(); // id -> highest revision seen, closed items too
    this.stale = null; // during a snapshot: ids it has not re-sent yet
    this.fresh = new Set(); // ids that arrived by a change, to highlight
  }

  /** begin starts a snapshot: the stream has just (re)opened. */
  begin() {
    this.stale = new Set(this.items.keys());
  }

  /** complete ends the snapshot (a snapshotComplete line). */
  complete() {
    // No snapshot line came since the last one ended: the snapshot was
    // empty, and nothing is open any more.
    if (!this.stale) this.stale = new Set(this.items.keys());
    for (const id of this.stale) this.items.delete(id);
    this.stale = null;
    this.forgetClosed();
  }

  /**
   * forgetClosed bounds what a board left open for days remembers: past
   * maxRevisions ids, the revisions of the oldest closed items are dropped
   * (a late line about an item that closed thousands of items ago is not
   * worth the memory), never those of open ones, and never mid-snapshot.
   */
  forgetClosed() {
    if (this.stale || this.revisions.size <= LiveSet.maxRevisions) return;
    let excess = this.revisions.size - Math.floor(LiveSet.maxRevisions * 0.8);
    for (const id of this.revisions.keys()) {
      if (excess <= 0) break;
      if (this.items.has(id)) continue;
      this.revisions.delete(id);
      excess--;
    }
  }

  /** apply takes one item from the stream, or from an action's reply. */
  apply(item, snapshot = false) {
    const id = item.id;
    if (snapshot) {
      if (!this.stale) this.stale = new Set(this.items.keys()); // a snapshot mid-stream
      this.stale.delete(id);
    } else if (this.stale) {
      this.complete(); // a change: the server has finished its snapshot
    }
    const rev = Number(item.revision || 0);
    if (rev < (this.revisions.get(id) ?? -1)) return;
    this.revisions.set(id, rev);
    const had = this.items.has(id);
    if (this.isOpen(item)) {
      this.items.set(id, item);
      if (!had && !snapshot) this.fresh.add(id);
    } else {
      this.items.delete(id);
      this.fresh.delete(id);
      if (had) this.onClosed(item);
      this.forgetClosed();
    }
  }

  /** takeFresh reports once whether id just arrived, for a highlight. */
  takeFresh(id) {
    return this.fresh.delete(id);
  }
}

/** The most item revisions a LiveSet keeps before it forgets closed ones. */
LiveSet.maxRevisions = 5000;

/** Recent keeps the last few items that left the board, newest first. */
export class Recent {
  constructor(max = 5) {
    this.max = max;
    this.list = [];
  }

  add(entry) {
    this.list = [entry, ...this.list.filter((e) => e.id !== entry.id)].slice(0, this.max);
  }
}

// Time formatting. Timestamps arrive as RFC 3339 strings, or null when unset.

export const parseTime = (ts) => (ts ? new Date(ts) : null);

export function clockTime(date) {
  return date ? date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : '';
}

/** ago says how long ago date was: "just now", "4 min", "1 h 05". */
export function ago(date, now = new Date()) {
  if (!date) return '';
  const min = Math.max(0, Math.floor((now - date) / 60000));
  if (min < 1) return 'just now';
  if (min < 60) return `${min} min`;
  return `${Math.floor(min / 60)} h ${String(min % 60).padStart(2, '0')}`;
}

/** since says what happened when: "ordered just now", "ordered 4 min ago". */
export function since(what, date, now = new Date()) {
  const a = ago(date, now);
  return a === 'just now' ? `${what} just now` : `${what} ${a} ago`;
}

/** money formats a common.v1.Money ({currencyCode, amountMinor}). */
export function money(m) {
  if (!m || !m.currencyCode) return '';
  const fmt = new Intl.NumberFormat(undefined, { style: 'currency', currency: m.currencyCode });
  const digits = fmt.resolvedOptions().maximumFractionDigits;
  return fmt.format(Number(m.amountMinor || 0) / 10 ** digits);
}

/** fulfillmentBadge is the icon and label of FULFILLMENT_DELIVERY or _PICKUP. */
export function fulfillmentBadge(fulfillment) {
  const pickup = fulfillment === 'FULFILLMENT_PICKUP';
  const kind = pickup ? 'pickup' : 'delivery';
  return el('span', { class: 'badge ' + kind },
    el('img', { src: `/web/${kind}.svg`, alt: '' }),
    pickup ? 'Pickup' : 'Delivery');
}

// Time-dependent text ("ordered 4 min ago") is refreshed in place by a
// timer, so that cards are not rebuilt under a finger about to tap them.
const updaters = new WeakMap();

/** timed sets node's text from fn(now) now and at every refreshTimes. */
export function timed(node, fn) {
  updaters.set(node, fn);
  node.dataset.timed = '';
  fn(new Date());
  return node;
}

/** refreshTimes reruns the functions of every timed node on the page. */
export function refreshTimes() {
  const now = new Date();
  for (const node of document.querySelectorAll('[data-timed]')) {
    const fn = updaters.get(node);
    if (fn) fn(now);
  }
}

/**
 * fill shows items as the cards of a column, in order, and updates its count
 * and empty note. A card whose key (id, revision, busy) is unchanged is kept
 * as it is; the DOM is only touched when something changed.
 */
export function fill(section, items, keyOf, make) {
  const list = section.querySelector('.cards');
  const old = new Map();
  for (const li of list.children) old.set(li.dataset.key, li);
  const cards = items.map((item) => {
    const key = keyOf(item);
    const li = old.get(key) || make(item);
    li.dataset.key = key;
    return li;
  });
  const same = cards.length === list.children.length && cards.every((c, i) => list.children[i] === c);
  if (!same) list.replaceChildren(...cards);
  section.querySelector('.count').textContent = String(cards.length);
  section.querySelector('.empty').hidden = cards.length > 0;
}

/**
 * keepingFocus runs render, which rebuilds or moves cards, and puts the
 * keyboard focus back where it was: taking a node out of the page drops its
 * focus, even when the same node goes back in. The focus goes to the same
 * button of the same card (found by its id wherever the card is now), else
 * to the card; a card that left the board hands it to the next card of its
 * column, or to the column's heading.
 */
export function keepingFocus(render) {
  const before = document.activeElement;
  const card = before && before.closest ? before.closest('li.card[data-id]') : null;
  if (!card) {
    render();
    return;
  }
  const id = card.dataset.id;
  const what = before.tagName === 'BUTTON' ? before.className : '';
  const column = card.closest('.group, section');
  const index = column ? [...column.querySelectorAll('li.card')].indexOf(card) : -1;
  render();
  if (document.activeElement === before) return;
  const now = document.querySelector(`li.card[data-id="${CSS.escape(id)}"]`);
  if (now) {
    const buttons = [...now.querySelectorAll('button:not([disabled])')];
    (buttons.find((b) => b.className === what) || buttons[0] || now).focus();
    return;
  }
  const rest = column ? [...column.querySelectorAll('li.card')] : [];
  const next = rest[Math.min(index, rest.length - 1)];
  if (next) {
    (next.querySelector('button:not([disabled])') || next).focus();
  } else if (column) {
    const h = column.querySelector('h2, h3');
    if (h) {
      h.setAttribute('tabindex', '-1');
      h.focus();
    }
  }
}

/**
 * startPage runs a board page: the sign-in form, the sign-out link, the
 * connection indicator and banner, the clock, and the live stream. open is
 * called with each new token and returns the stop function of its stream.
 * Every 15 seconds the clock and the ages on the cards are refreshed; no
 * request is made for it.
 */
export function startPage({ role, open }) {
  const tokens = session(role);
  const $ = (id) => document.getElementById(id);
  const conn = $('conn');
  const banner = $('banner');
  let stop = null;

  const clock = () => { $('clock').textContent = clockTime(new Date()); };
  clock();
  setInterval(() => { clock(); refreshTimes(); }, 15000);

  // lost is true from a failed stream until the next one is live: the board
  // may be out of date meanwhile, and says so.
  let lost = false;
  function setState(state, detail) {
    conn.className = 'conn ' + state;
    conn.textContent = { live: 'Live', connecting: 'Connecting…', down: 'Offline' }[state] || state;
    if (state === 'down') lost = true;
    if (state === 'live' || state === '') lost = false;
    banner.hidden = !lost;
    banner.textContent = state === 'down' ? detail : 'Reconnecting…';
    $('board').classList.toggle('stale', lost);
  }

  function showSignIn(message) {
    if (stop) stop();
    stop = null;
    $('board').hidden = true;
    $('recent').hidden = true;
    $('signout').hidden = true;
    banner.hidden = true;
    setState('', '');
    conn.textContent = 'Signed out';
    $('signin').hidden = false;
    $('signin-error').hidden = !message;
    $('signin-error').textContent = message || '';
    $('token').value = '';
    $('token').focus();
  }

  function showBoard(token) {
    $('signin').hidden = true;
    $('board').hidden = false;
    $('signout').hidden = false;
    stop = open(token, {
      onState: setState,
      onUnauthorized: (err) => {
        tokens.clear();
        showSignIn(`The token was refused: ${err.message}`);
      },
    });
  }

  $('signin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const token = $('token').value.trim().replace(/^Bearer\s+/i, '');
    if (!token) return;
    tokens.set(token);
    showBoard(token);
  });
  $('signout').addEventListener('click', () => {
    tokens.clear();
    showSignIn('');
  });

  const token = tokens.get();
  if (token) showBoard(token);
  else showSignIn('');

  return { token: () => tokens.get(), signOut: (msg) => { tokens.clear(); showSignIn(msg); } };
}
