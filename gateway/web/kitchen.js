// The kitchen display: open tickets in arrival order, QUEUED and BAKING,
// fed by GET /v1/kitchen/tickets:watch. Start, Ready and Reject call the
// kitchen API; the board itself only ever changes from what the API sends.

import {
  LiveSet, Recent, call, clockTime, el, fill, fulfillmentBadge, keepingFocus, parseTime, since, startPage, timed, toast, watch,
} from './board.js';

const OPEN = new Set(['TICKET_STATUS_QUEUED', 'TICKET_STATUS_BAKING']);
const SIZES = { SIZE_SMALL: 'S', SIZE_MEDIUM: 'M', SIZE_LARGE: 'L' };
const SIZE_NAMES = { SIZE_SMALL: 'Small', SIZE_MEDIUM: 'Medium', SIZE_LARGE: 'Large' };
const DONE = {
  TICKET_STATUS_READY: 'Ready',
  TICKET_STATUS_REJECTED: 'Rejected',
  TICKET_STATUS_CANCELLED: 'Cancelled',
};

const $ = (id) => document.getElementById(id);
const recent = new Recent(5);
const busy = new Set(); // ticket ids with an action in flight
const tickets = new LiveSet({
  isOpen: (t) => OPEN.has(t.status),
  onClosed: (t) => {
    recent.add({ id: t.id, ticket: t, at: new Date() });
    if (t.status === 'TICKET_STATUS_CANCELLED') {
      toast(`${t.pizzaName} for ${t.customerName || 'a customer'} was cancelled by the customer.`);
    }
  },
});

let page;

/** byArrival orders tickets by order time, then id, as the kitchen works them. */
function byArrival(a, b) {
  const ta = Date.parse(a.orderTime || '') || 0;
  const tb = Date.parse(b.orderTime || '') || 0;
  return ta - tb || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function pizzaLabel(t) {
  return `${t.pizzaName || 'Pizza'} (${SIZES[t.size] || '?'})`;
}

function card(t) {
  const baking = t.status === 'TICKET_STATUS_BAKING';
  const eta = parseTime(t.estimatedReadyTime);
  const toppings = t.toppingNames || [];
  const ordered = parseTime(t.orderTime);

  const actions = el('div', { class: 'actions' });
  const button = (label, cls, handler) => {
    const b = el('button', { class: 'btn ' + cls, type: 'button', text: label, disabled: busy.has(t.id) });
    b.addEventListener('click', handler);
    return b;
  };
  if (baking) {
    actions.append(button('Ready', 'ready', () => act(t, 'ready')));
  } else {
    actions.append(
      button('Start', 'start', () => act(t, 'start')),
      button('Reject', 'reject', () => askReject(t)),
    );
  }

  const age = el('span', { class: 'age', title: 'Ordered at ' + clockTime(ordered) });
  timed(age, (now) => { age.textContent = since('ordered', ordered, now); });
  let due = null;
  if (eta) {
    due = el('span', { title: 'Estimated ready time' });
    timed(due, (now) => {
      const late = eta < now;
      due.className = late ? 'eta late' : 'eta';
      due.textContent = (late ? 'due ' : 'ready ~') + clockTime(eta);
    });
  }

  return el('li', {
    tabindex: '-1', // takes the focus while its buttons wait for an action
    class: 'card ' + (baking ? 'baking' : 'queued') + (tickets.takeFresh(t.id) ? ' fresh' : ''),
    dataset: { id: t.id },
  },
  el('div', { class: 'head' },
    el('span', { class: 'title', text: t.pizzaName || 'Pizza' }),
    el('span', { class: 'size', text: SIZE_NAMES[t.size] || '?' }),
    el('span', { class: 'ident', text: '#' + t.id.slice(-6) })),
  el('div', { class: 'toppings' + (toppings.length ? '' : ' none'), text: toppings.length ? '+ ' + toppings.join(', ') : 'No extra toppings' }),
  t.note ? el('div', { class: 'note', text: t.note }) : null,
  el('div', { class: 'meta' },
    el('span', { class: 'customer', text: t.customerName || 'Customer' }),
    fulfillmentBadge(t.fulfillment),
    age,
    due),
  actions);
}

function recentItem({ ticket: t, at }) {
  const bad = t.status !== 'TICKET_STATUS_READY';
  const status = DONE[t.status] || t.status;
  return el('li', { class: bad ? 'bad' : '', dataset: { id: t.id } },
    el('span', { class: 'what', text: pizzaLabel(t) }), ' · ', t.customerName || 'Customer', ' — ',
    el('span', { class: 'status', text: status }),
    t.reason ? ` (${t.reason})` : '',
    ' ', el('span', { class: 'when', text: clockTime(parseTime(t.updateTime) || at) }));
}

/** keyOf names what a card shows: a card with the same key is reused. */
const keyOf = (t) => `${t.id}@${t.revision}${busy.has(t.id) ? ' busy' : ''}`;

/** render shows the board, keeping the keyboard focus in place. */
function render() {
  keepingFocus(draw);
}

function draw() {
  const open = [...tickets.items.values()].sort(byArrival);
  fill($('col-queued'), open.filter((t) => t.status === 'TICKET_STATUS_QUEUED'), keyOf, card);
  fill($('col-baking'), open.filter((t) => t.status === 'TICKET_STATUS_BAKING'), keyOf, card);
  $('recent').querySelector('ol').replaceChildren(...recent.list.map(recentItem));
  $('recent').hidden = recent.list.length === 0 || $('board').hidden;
  document.title = `Kitchen (${open.length}) · Pizzashop`;
}

/** act POSTs :start, :ready or :reject and applies the ticket it returns. */
async function act(t, verb, body = {}) {
  if (busy.has(t.id)) return;
  busy.add(t.id);
  render();
  try {
    const updated = await call(`/v1/kitchen/tickets/${encodeURIComponent(t.id)}:${verb}`, page.token(), body);
    tickets.apply(updated);
  } catch (err) {
    if (err.unauthorized && err.httpStatus === 401) {
      page.signOut(`The token was refused: ${err.message}`);
      return;
    }
    toast(`Could not ${verb} ${pizzaLabel(t)} for ${t.customerName || 'the customer'}: ${err.message}`, 'error');
  } finally {
    busy.delete(t.id);
    render();
  }
}

// The reject dialog asks for the reason the customer will see.
let rejecting = null;

function askReject(t) {
  rejecting = t;
  $('reject-what').textContent = `${pizzaLabel(t)} for ${t.customerName || 'the customer'}`;
  $('reject-reason').value = '';
  $('reject-dialog').showModal();
  $('reject-reason').focus();
}

$('reject-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const reason = $('reject-reason').value.trim();
  if (!reason || !rejecting) return;
  const t = rejecting;
  rejecting = null;
  $('reject-dialog').close();
  act(t, 'reject', { reason });
});
$('reject-cancel').addEventListener('click', () => {
  rejecting = null;
  $('reject-dialog').close();
});
for (const b of $('reject-dialog').querySelectorAll('[data-reason]')) {
  b.addEventListener('click', () => {
    $('reject-reason').value = b.dataset.reason;
    $('reject-reason').focus();
  });
}

page = startPage({
  role: 'kitchen',
  open: (token, handlers) => watch('/v1/kitchen/tickets:watch', token, {
    ...handlers,
    onOpen: () => tickets.begin(),
    onResult: (r) => {
      if (r.snapshotComplete) tickets.complete();
      else if (r.ticket) tickets.apply(r.ticket, Boolean(r.snapshot));
    },
    onBatch: render,
  }),
});
