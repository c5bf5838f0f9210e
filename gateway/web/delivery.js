// The delivery board: ready orders for couriers and the counter, fed by
// GET /v1/delivery/deliveries:watch (both fulfillments). Dispatch, Delivered
// and Picked up call the delivery API; the board only ever changes from what
// the API sends. Only the courier who took a delivery out can mark it
// delivered, so the others see who has it instead of the button.

import {
  LiveSet, Recent, call, clockTime, el, fill, fulfillmentBadge, keepingFocus, money, parseTime, since, startPage, timed, toast, watch,
} from './board.js';

const WAITING = 'DELIVERY_STATUS_WAITING';
const OUT = 'DELIVERY_STATUS_OUT_FOR_DELIVERY';
const DONE = {
  DELIVERY_STATUS_DELIVERED: 'Delivered',
  DELIVERY_STATUS_PICKED_UP: 'Picked up',
};
const PAYMENT = {
  PAYMENT_METHOD_CASH: ['pay-cash', 'Cash'],
  PAYMENT_METHOD_CARD: ['pay-card', 'Card'],
};

const $ = (id) => document.getElementById(id);
const recent = new Recent(5);
const busy = new Set(); // delivery ids with an action in flight
const deliveries = new LiveSet({
  isOpen: (d) => d.status === WAITING || d.status === OUT,
  onClosed: (d) => recent.add({ id: d.id, delivery: d, at: new Date() }),
});

let page;

/**
 * me is the subject of the signed-in courier's token, read from its payload
 * only to decide which deliveries this courier may close: the delivery
 * service checks the signature and refuses anyone else's anyway.
 */
function me() {
  const token = page?.token() || '';
  if (token !== meCache.token) meCache = { token, sub: subjectOf(token) };
  return meCache.sub;
}
let meCache = { token: null, sub: '' }; // me() of the token last read, decoded once

function subjectOf(token) {
  try {
    const part = token.split('.')[1] || '';
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='));
    return String(JSON.parse(json).sub || '');
  } catch {
    return '';
  }
}

/** byReady orders deliveries by the time the kitchen marked them ready. */
function byReady(a, b) {
  const ta = Date.parse(a.readyTime || '') || 0;
  const tb = Date.parse(b.readyTime || '') || 0;
  return ta - tb || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function address(a) {
  if (!a || !a.line1) return null;
  const town = [a.postalCode, a.city].filter(Boolean).join(' ');
  return el('div', { class: 'address' },
    el('span', { class: 'line', text: a.line1 }),
    a.line2 ? el('span', { class: 'line', text: a.line2 }) : null,
    town ? el('span', { class: 'line', text: town }) : null,
    a.instructions ? el('span', { class: 'instructions', text: a.instructions }) : null);
}

function payment(d) {
  const [cls, label] = PAYMENT[d.paymentMethod] || ['pay-cash', 'Pay at handover'];
  return el('span', { class: 'badge ' + cls, text: label });
}

function card(d) {
  const pickup = d.fulfillment === 'FULFILLMENT_PICKUP';
  const out = d.status === OUT;

  const actions = el('div', { class: 'actions' });
  const button = (label, cls, verb) => {
    const b = el('button', { class: 'btn ' + cls, type: 'button', text: label, disabled: busy.has(d.id) });
    b.addEventListener('click', () => act(d, verb, label));
    return b;
  };
  const courier = me();
  const mine = !d.courierId || !courier || d.courierId === courier;
  if (pickup) actions.append(button('Picked up', 'done', 'pickup'));
  else if (out && mine) actions.append(button('Delivered', 'done', 'deliver'));
  else if (out) actions.append(el('span', { class: 'theirs', text: `Only ${d.courierId} can mark it delivered` }));
  else actions.append(button('Dispatch', 'dispatch', 'dispatch'));

  const when = el('span', { class: 'when' });
  if (out) {
    const left = parseTime(d.dispatchTime);
    const courier = d.courierId ? ` with ${d.courierId}` : '';
    timed(when, (now) => { when.textContent = since('left', left, now) + courier; });
  } else {
    const ready = parseTime(d.readyTime);
    timed(when, (now) => { when.textContent = since('ready', ready, now); });
  }

  const phone = d.customerPhone
    ? el('a', { class: 'phone', href: 'tel:' + d.customerPhone.replace(/[^0-9+]/g, ''), text: d.customerPhone })
    : null;

  return el('li', {
    tabindex: '-1', // takes the focus while its buttons wait for an action
    class: 'card ' + (pickup ? 'pickup' : out ? 'out' : 'waiting') + (deliveries.takeFresh(d.id) ? ' fresh' : ''),
    dataset: { id: d.id },
  },
  el('div', { class: 'head' },
    el('span', { class: 'title', text: d.summary || 'Order' }),
    el('span', { class: 'ident', text: '#' + d.id.slice(-6) })),
  el('div', { class: 'meta' },
    el('span', { class: 'customer', text: d.customerName || 'Customer' }),
    phone,
    fulfillmentBadge(d.fulfillment)),
  pickup ? null : address(d.address),
  el('div', { class: 'meta' },
    el('span', { class: 'due', text: money(d.amountDue) }),
    payment(d),
    when),
  actions);
}

function recentItem({ delivery: d, at }) {
  return el('li', { dataset: { id: d.id } },
    el('span', { class: 'what', text: d.summary || 'Order' }), ' · ', d.customerName || 'Customer', ' — ',
    el('span', { class: 'status', text: DONE[d.status] || d.status }),
    ' ', el('span', { class: 'when', text: clockTime(parseTime(d.completeTime) || at) }));
}

/** keyOf names what a card shows: a card with the same key is reused. */
const keyOf = (d) => `${d.id}@${d.revision}${busy.has(d.id) ? ' busy' : ''}`;

/** render shows the board, keeping the keyboard focus in place. */
function render() {
  keepingFocus(draw);
}

function draw() {
  const open = [...deliveries.items.values()].sort(byReady);
  const toDeliver = open.filter((d) => d.fulfillment !== 'FULFILLMENT_PICKUP');
  const waiting = toDeliver.filter((d) => d.status === WAITING);
  const out = toDeliver.filter((d) => d.status === OUT);
  fill($('group-waiting'), waiting, keyOf, card);
  fill($('group-out'), out, keyOf, card);
  $('col-deliver').querySelector('h2 .count').textContent = String(toDeliver.length);
  const pickups = open.filter((d) => d.fulfillment === 'FULFILLMENT_PICKUP');
  fill($('col-pickup'), pickups, keyOf, card);
  $('recent').querySelector('ol').replaceChildren(...recent.list.map(recentItem));
  $('recent').hidden = recent.list.length === 0 || $('board').hidden;
  document.title = `Delivery board (${open.length}) · Pizzashop`;
}

/** act POSTs :dispatch, :deliver or :pickup and applies the delivery it returns. */
async function act(d, verb, label) {
  if (busy.has(d.id)) return;
  busy.add(d.id);
  render();
  try {
    const updated = await call(`/v1/delivery/deliveries/${encodeURIComponent(d.id)}:${verb}`, page.token());
    deliveries.apply(updated);
  } catch (err) {
    if (err.unauthorized && err.httpStatus === 401) {
      page.signOut(`The token was refused: ${err.message}`);
      return;
    }
    toast(`${label} failed for ${d.customerName || 'the customer'} (${d.summary || d.id}): ${err.message}`, 'error');
  } finally {
    busy.delete(d.id);
    render();
  }
}

page = startPage({
  role: 'courier',
  open: (token, handlers) => watch('/v1/delivery/deliveries:watch', token, {
    ...handlers,
    onOpen: () => deliveries.begin(),
    onResult: (r) => {
      if (r.snapshotComplete) deliveries.complete();
      else if (r.delivery) deliveries.apply(r.delivery, Boolean(r.snapshot));
    },
    onBatch: render,
  }),
});
