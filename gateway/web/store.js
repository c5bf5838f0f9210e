// The storefront: browse the menu, build one pizza priced by the server,
// register or sign in, check out, follow the order live, cancel it while
// the kitchen has not started, and page through past orders.
//
// One page, routed by the URL fragment (#/, #/signin, #/register,
// #/checkout, #/orders, #/orders/<id>). API data reaches the DOM only as
// text (see board.js).

import { el, ApiError, readError, watch, money, parseTime, clockTime } from './board.js';

const $ = (id) => document.getElementById(id);

// How often the open menu is revalidated (a 304 costs a few bytes).
const MENU_POLL_MS = 4000;
const MAX_TOPPINGS = 3;
const SIZES = [
  ['SIZE_SMALL', 'Small'],
  ['SIZE_MEDIUM', 'Medium'],
  ['SIZE_LARGE', 'Large'],
];
const sizeName = (s) => (SIZES.find(([k]) => k === s) || [s, s])[1];

const STATUS = {
  ORDER_STATUS_PLACED: 'Placed',
  ORDER_STATUS_ACCEPTED: 'Accepted by the kitchen',
  ORDER_STATUS_BAKING: 'In the oven',
  ORDER_STATUS_READY: 'Ready',
  ORDER_STATUS_OUT_FOR_DELIVERY: 'Out for delivery',
  ORDER_STATUS_DELIVERED: 'Delivered',
  ORDER_STATUS_PICKED_UP: 'Picked up',
  ORDER_STATUS_REJECTED: 'Rejected by the kitchen',
  ORDER_STATUS_CANCELLED: 'Cancelled',
};
const FINAL = new Set(['ORDER_STATUS_DELIVERED', 'ORDER_STATUS_PICKED_UP', 'ORDER_STATUS_REJECTED', 'ORDER_STATUS_CANCELLED']);
const CANCELLABLE = new Set(['ORDER_STATUS_PLACED', 'ORDER_STATUS_ACCEPTED']);
const DELIVERY_STEPS = ['ORDER_STATUS_PLACED', 'ORDER_STATUS_ACCEPTED', 'ORDER_STATUS_BAKING', 'ORDER_STATUS_READY', 'ORDER_STATUS_OUT_FOR_DELIVERY', 'ORDER_STATUS_DELIVERED'];
const PICKUP_STEPS = ['ORDER_STATUS_PLACED', 'ORDER_STATUS_ACCEPTED', 'ORDER_STATUS_BAKING', 'ORDER_STATUS_READY', 'ORDER_STATUS_PICKED_UP'];

// ---------------------------------------------------------------- session

// The customer's token and profile live in localStorage, so that a
// customer stays signed in across visits until the token expires.
const TOKEN_KEY = 'pizzashop.customer.token';
const PROFILE_KEY = 'pizzashop.customer.profile';
const CART_KEY = 'pizzashop.cart';

const auth = {
  token: () => localStorage.getItem(TOKEN_KEY) || '',
  profile: () => {
    try {
      return JSON.parse(localStorage.getItem(PROFILE_KEY) || 'null');
    } catch {
      return null;
    }
  },
  set(token, profile) {
    localStorage.setItem(TOKEN_KEY, token);
    localStorage.setItem(PROFILE_KEY, JSON.stringify(profile || null));
  },
  clear() {
    localStorage.removeItem(TOKEN_KEY);
    localStorage.removeItem(PROFILE_KEY);
  },
};

// ---------------------------------------------------------------- API

/**
 * api calls the REST API. The customer's token goes with every call when
 * there is one: the public calls (menu, price, register, sign in) ignore a
 * stale one. A refused token on a call that needs it sends the customer to
 * sign in again.
 */
async function api(method, path, { body, headers = {}, needsAuth = false } = {}) {
  const h = { 'Accept': 'application/json', ...headers };
  const token = auth.token();
  if (token) h['Authorization'] = 'Bearer ' + token;
  if (body !== undefined) h['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  } catch {
    throw new ApiError(0, { message: 'Network error: the shop could not be reached. Check your connection and try again.' });
  }
  if (resp.status === 304) return { notModified: true, resp };
  if (!resp.ok) {
    const err = await readError(resp);
    // Refused is the token sent: one that has replaced it meanwhile stays.
    if (needsAuth && resp.status === 401 && auth.token() === token) expired();
    throw err;
  }
  return { data: await resp.json(), resp };
}

// ---------------------------------------------------------------- forms

/** clearErrors hides every field and form error of form. */
function clearErrors(form) {
  for (const p of form.querySelectorAll('.field-error')) {
    p.hidden = true;
    p.textContent = '';
  }
  for (const i of form.querySelectorAll('[aria-invalid]')) i.removeAttribute('aria-invalid');
  const general = form.querySelector('[role=alert].error');
  if (general) {
    general.hidden = true;
    general.textContent = '';
  }
}

/**
 * showErrors puts each field violation of err next to the control the
 * server named (by its name attribute), the rest in the form's alert, and
 * moves focus to the first problem.
 */
function showErrors(form, err) {
  clearErrors(form);
  const general = form.querySelector('[role=alert].error');
  const rest = [];
  let first = null;
  const fields = err instanceof ApiError ? err.fields : [];
  for (const { field, message } of fields) {
    const input = form.querySelector(`[name="${CSS.escape(field)}"]`) ||
      form.querySelector(`[name^="${CSS.escape(field)}."]`);
    const box = input && input.id ? $(input.id + '-err') : null;
    if (!box) {
      rest.push(`${field}: ${message}`);
      continue;
    }
    input.setAttribute('aria-invalid', 'true');
    const label = form.querySelector(`label[for="${input.id}"]`);
    const text = label ? `${label.textContent.replace(/\s*\(.*\)$/, '')} ${message}` : capitalize(message);
    box.textContent = (box.textContent ? box.textContent + ' ' : '') + text + '.';
    box.hidden = false;
    first = first || input;
  }
  if (rest.length || !fields.length) {
    general.textContent = rest.length ? rest.join('; ') : sentence(err.message);
    general.hidden = false;
  }
  if (first) {
    first.focus();
  } else {
    general.setAttribute('tabindex', '-1');
    general.focus();
  }
}

const capitalize = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const sentence = (s) => (s && !/[.!?]$/.test(s) ? capitalize(s) + '.' : capitalize(s));

function busy(button, on) {
  button.disabled = on;
  button.setAttribute('aria-busy', on ? 'true' : 'false');
}

// ---------------------------------------------------------------- menu

const shop = {
  menu: null,
  etag: '',
  cart: loadCart(),
  priceSeq: 0,
  price: null, // the server's breakdown of the current cart
};

function loadCart() {
  try {
    const c = JSON.parse(sessionStorage.getItem(CART_KEY) || 'null');
    if (c && typeof c === 'object') return { pizzaId: c.pizzaId || '', size: c.size || '', toppingIds: Array.isArray(c.toppingIds) ? c.toppingIds : [] };
  } catch {
    // a bad entry: start empty
  }
  return { pizzaId: '', size: '', toppingIds: [] };
}

function saveCart() {
  sessionStorage.setItem(CART_KEY, JSON.stringify(shop.cart));
}

let menuLoading = null; // the revalidation in flight, if any

/**
 * loadMenu revalidates the menu with its ETag; a change re-renders it. A
 * call while one is in flight joins it, so on a slow network the 4 s timer
 * does not pile requests up.
 */
function loadMenu() {
  if (!menuLoading) menuLoading = fetchMenu().finally(() => { menuLoading = null; });
  return menuLoading;
}

async function fetchMenu() {
  try {
    const { data, resp, notModified } = await api('GET', '/v1/menu', { headers: shop.etag ? { 'If-None-Match': shop.etag } : {} });
    $('menu-error').hidden = true;
    if (notModified) return;
    const menu = data.menu || data;
    // An answer from a replica behind the one that answered before never
    // takes the page back to an older menu.
    if (shop.menu && Number(menu.version || 0) < Number(shop.menu.version || 0)) return;
    shop.etag = resp.headers.get('ETag') || '';
    shop.menu = menu;
    renderMenu();
  } catch (err) {
    if (!shop.menu) {
      $('menu-loading').hidden = true;
      $('menu-error').textContent = `The menu could not be loaded: ${err.message}`;
      $('menu-error').hidden = false;
    }
  }
}

const priceOf = (item, size) => {
  const p = (item.prices || []).find((x) => x.size === size);
  return p ? money({ currencyCode: shop.menu.currencyCode, amountMinor: p.amountMinor }) : '';
};

function renderMenu() {
  const m = shop.menu;
  if (!m) return;
  $('menu-loading').hidden = true;
  $('builder').hidden = false;
  const focused = document.activeElement && document.activeElement.id;
  const cart = shop.cart;
  const pizzas = m.pizzas || [];
  const toppings = m.toppings || [];

  // Items that went away or sold out leave the cart, with a word why.
  const dropped = [];
  const pizza = pizzas.find((p) => p.id === cart.pizzaId);
  if (cart.pizzaId && (!pizza || !pizza.available)) {
    dropped.push(pizza ? pizza.name : 'your pizza');
    cart.pizzaId = '';
  }
  cart.toppingIds = cart.toppingIds.filter((id) => {
    const t = toppings.find((x) => x.id === id);
    if (t && t.available) return true;
    dropped.push(t ? t.name : id);
    return false;
  });
  if (dropped.length) notice(`Sold out now, removed from your pizza: ${dropped.join(', ')}.`);
  saveCart();

  $('pizza-list').replaceChildren(...pizzas.map((p) => {
    const id = 'pz-' + p.id;
    return el('li', { class: 'item' + (p.available ? '' : ' soldout'), dataset: { id: p.id } },
      el('input', { type: 'radio', name: 'pizza', id, value: p.id, checked: p.id === cart.pizzaId, disabled: !p.available, 'aria-describedby': id + '-d' }),
      el('label', { for: id },
        el('span', { class: 'name', text: p.name }),
        p.available ? null : el('span', { class: 'soldout-tag', text: 'Sold out' })),
      el('p', { id: id + '-d', class: 'desc' },
        p.description ? el('span', { text: p.description }) : null,
        el('span', { class: 'prices', text: SIZES.map(([s, n]) => `${n} ${priceOf(p, s)}`).join(' · ') })));
  }));

  $('size-list').replaceChildren(...SIZES.map(([s, n]) => {
    const id = 'sz-' + s;
    const chosen = pizzas.find((p) => p.id === cart.pizzaId);
    return el('span', { class: 'size-choice' },
      el('input', { type: 'radio', name: 'size', id, value: s, checked: s === cart.size }),
      el('label', { for: id }, n, chosen ? el('span', { class: 'muted', text: ' ' + priceOf(chosen, s) }) : null));
  }));

  $('topping-list').replaceChildren(...toppings.map((t) => {
    const id = 'tp-' + t.id;
    const priced = cart.size ? priceOf(t, cart.size) : SIZES.map(([s, n]) => `${n[0]} ${priceOf(t, s)}`).join(' / ');
    return el('li', { class: 'item' + (t.available ? '' : ' soldout'), dataset: { id: t.id } },
      el('input', { type: 'checkbox', name: 'topping', id, value: t.id, checked: cart.toppingIds.includes(t.id), disabled: !t.available }),
      el('label', { for: id },
        el('span', { class: 'name', text: t.name }),
        el('span', { class: 'prices', text: ' + ' + priced }),
        t.available ? null : el('span', { class: 'soldout-tag', text: 'Sold out' })));
  }));
  toppingLimit(false);
  if (focused && $(focused)) $(focused).focus();
  // The first render, for measuring time to menu (performance.getEntriesByName).
  if (!performance.getEntriesByName('menu-rendered').length) performance.mark('menu-rendered');
  updatePrice();
}

function toppingLimit(refused) {
  const full = shop.cart.toppingIds.length >= MAX_TOPPINGS;
  $('topping-list').classList.toggle('full', full);
  $('topping-limit').textContent = refused
    ? `A pizza takes at most ${MAX_TOPPINGS} toppings. Remove one to choose another.`
    : (full ? `${MAX_TOPPINGS} toppings chosen, the most a pizza can have.` : '');
  $('topping-limit').classList.toggle('refused', refused);
}

function onBuilderChange(ev) {
  const t = ev.target;
  const cart = shop.cart;
  if (t.name === 'pizza') cart.pizzaId = t.value;
  if (t.name === 'size') cart.size = t.value;
  if (t.name === 'topping') {
    if (t.checked && cart.toppingIds.length >= MAX_TOPPINGS) {
      t.checked = false; // a fourth topping is never taken
      toppingLimit(true);
      return;
    }
    cart.toppingIds = t.checked ? [...cart.toppingIds, t.value] : cart.toppingIds.filter((x) => x !== t.value);
  }
  saveCart();
  if (t.name === 'topping') {
    toppingLimit(false);
    updatePrice();
  } else {
    renderMenu(); // sizes show the chosen pizza's prices, toppings the chosen size's; it reprices
  }
}

/** updatePrice asks the server for the price of the cart as it is now. */
async function updatePrice() {
  const cart = shop.cart;
  const box = $('price');
  const seq = ++shop.priceSeq;
  shop.price = null;
  $('to-checkout').disabled = true;
  $('price-error').hidden = true;
  if (!cart.pizzaId || !cart.size) {
    box.replaceChildren(el('p', { class: 'muted', text: 'Choose a pizza and a size to see the price.' }));
    return;
  }
  box.setAttribute('aria-busy', 'true');
  try {
    const { data } = await api('POST', '/v1/menu:price', { body: { pizzaId: cart.pizzaId, size: cart.size, toppingIds: cart.toppingIds } });
    if (seq !== shop.priceSeq) return; // the cart changed meanwhile
    shop.price = data.price;
    box.replaceChildren(priceTable(data.price));
    $('to-checkout').disabled = false;
  } catch (err) {
    if (seq !== shop.priceSeq) return;
    box.replaceChildren();
    $('price-error').textContent = `No price: ${err.message}`;
    $('price-error').hidden = false;
  } finally {
    if (seq === shop.priceSeq) box.removeAttribute('aria-busy');
  }
}

/** priceTable shows a PriceBreakdown: pizza, each topping, total. */
function priceTable(p) {
  const rows = [el('tr', {}, el('th', { scope: 'row', text: `${sizeName(p.size)} ${p.pizza.name}` }), el('td', { text: money(p.pizza.price) }))];
  for (const t of p.toppings || []) rows.push(el('tr', {}, el('th', { scope: 'row', text: '+ ' + t.name }), el('td', { text: money(t.price) })));
  rows.push(el('tr', { class: 'total' }, el('th', { scope: 'row', text: 'Total' }), el('td', { id: 'price-total', text: money(p.total) })));
  return el('table', { class: 'breakdown' }, el('caption', { class: 'sr-only', text: 'Price from the shop' }), el('tbody', {}, ...rows));
}

// ---------------------------------------------------------------- identity

let afterSignIn = '#/';
// The id of the customer whose orders and details the page shows.
let shownFor = (auth.profile() || {}).id || '';

/** needSignIn sends the customer to the sign-in form, then back to where. */
function needSignIn(where, why) {
  afterSignIn = where;
  const w = $('signin-why');
  w.textContent = why || '';
  w.hidden = !why;
  location.hash = '#/signin';
}

/** expired handles a refused token: sign in again, then carry on. */
function expired() {
  if (!auth.token()) return; // already handled by another call that failed with it
  auth.clear();
  renderIdentity();
  const here = location.hash && location.hash !== '#/signin' ? location.hash : '#/';
  needSignIn(here, 'Your sign-in has expired. Please sign in again.');
  if (location.hash === '#/signin') route();
}

function renderIdentity() {
  const p = auth.profile();
  const signedIn = Boolean(auth.token());
  $('who').hidden = !signedIn;
  $('who').textContent = signedIn && p ? `Signed in as ${p.name}` : '';
  $('signout').hidden = !signedIn;
  $('nav-signin').hidden = signedIn;
  $('nav-orders').hidden = !signedIn;
}

async function onSignIn(ev) {
  ev.preventDefault();
  const form = ev.target;
  const button = form.querySelector('button[type=submit]');
  clearErrors(form);
  busy(button, true);
  try {
    const { data } = await api('POST', '/v1/customers:signIn', { body: { email: $('si-email').value, password: $('si-password').value } });
    auth.set(data.token, data.customer);
    $('si-password').value = '';
    signedIn();
  } catch (err) {
    showErrors(form, err);
  } finally {
    busy(button, false);
  }
}

async function onRegister(ev) {
  ev.preventDefault();
  const form = ev.target;
  const button = form.querySelector('button[type=submit]');
  clearErrors(form);
  const v = (id) => $(id).value.trim();
  const body = { name: v('rg-name'), email: v('rg-email'), phone: v('rg-phone'), password: $('rg-password').value };
  const address = { line1: v('rg-line1'), line2: v('rg-line2'), city: v('rg-city'), postalCode: v('rg-postal') };
  if (Object.values(address).some(Boolean)) body.address = address;
  busy(button, true);
  try {
    const { data } = await api('POST', '/v1/customers', { body });
    auth.set(data.token, data.customer);
    $('rg-password').value = '';
    signedIn();
  } catch (err) {
    showErrors(form, err);
  } finally {
    busy(button, false);
  }
}

function signedIn() {
  // Someone else than the customer the page last showed (a sign-in after
  // an expired one): nothing of the other's stays on the page.
  const id = (auth.profile() || {}).id || '';
  if (id !== shownFor) forgetCustomer();
  shownFor = id;
  renderIdentity();
  const to = afterSignIn || '#/';
  afterSignIn = '#/';
  $('signin-why').hidden = true;
  if (location.hash === to) route();
  else location.hash = to;
}

function signOut() {
  auth.clear();
  stopWatch();
  forgetCustomer();
  renderIdentity();
  notice('You are signed out.');
  location.hash = '#/';
}

/**
 * forgetCustomer clears what the page shows of the customer who was signed
 * in: the next one to sign in in this tab sees none of it.
 */
function forgetCustomer() {
  shownFor = '';
  stopWatch();
  $('checkout-form').reset();
  clearErrors($('checkout-form'));
  $('co-summary').replaceChildren();
  checkoutFor = null;
  attempt.key = '';
  attempt.body = '';
  pages.seq++; // an answer on its way is the old customer's
  pages.loading = false;
  pages.tokens = [''];
  pages.at = 0;
  $('orders-list').replaceChildren();
  $('orders-error').hidden = true;
  $('orders-more').hidden = true;
  $('orders-newer').hidden = true;
  follow.id = '';
  follow.order = null;
  follow.heard = '';
  $('order-announce').textContent = '';
  $('order-body').replaceChildren();
  $('cancel').hidden = true;
  $('cancel-error').hidden = true;
}

// ---------------------------------------------------------------- checkout

// The customer whose profile filled the checkout form: another one's
// details never stay on it.
let checkoutFor = null;

// One Idempotency-Key per checkout attempt: a repeated or retried submit of
// the same order sends the same key, so the shop creates one order. A
// changed order is a new attempt with a new key.
const attempt = { key: '', body: '' };

// Keys are 26 random letters (122 bits): no digits, so that no key can
// look like a card number to the shop's card scan, which refuses those.
function newKey() {
  const b = crypto.getRandomValues(new Uint8Array(26));
  return 'co-' + Array.from(b, (x) => String.fromCharCode(97 + (x % 26))).join('');
}

function renderCheckout() {
  if (!auth.token()) {
    needSignIn('#/checkout', 'Sign in or create an account to place your order.');
    return false;
  }
  if (!shop.price) {
    location.hash = '#/';
    notice('Choose a pizza and a size first.');
    return false;
  }
  const p = shop.price;
  $('co-summary').replaceChildren(priceTable(p));
  const profile = auth.profile() || {};
  const who = profile.id || auth.token();
  if (checkoutFor !== null && checkoutFor !== who) forgetCustomer();
  checkoutFor = who;
  const a = profile.address || {};
  for (const [id, v] of [['co-line1', a.line1], ['co-line2', a.line2], ['co-city', a.city], ['co-postal', a.postalCode], ['co-instructions', a.instructions]]) {
    if (!$(id).value && v) $(id).value = v;
  }
  toggleAddress();
  return true;
}

function toggleAddress() {
  const pickup = document.querySelector('input[name=fulfillment]:checked').value === 'FULFILLMENT_PICKUP';
  $('co-address').hidden = pickup;
}

async function onCheckout(ev) {
  ev.preventDefault();
  const form = ev.target;
  const button = $('place');
  if (button.disabled) return; // a double click while the first is on its way
  clearErrors(form);
  const fulfillment = form.querySelector('input[name=fulfillment]:checked').value;
  const v = (id) => $(id).value.trim();
  const body = {
    item: { pizzaId: shop.cart.pizzaId, size: shop.cart.size, toppingIds: shop.cart.toppingIds },
    fulfillment,
    paymentMethod: form.querySelector('input[name=payment]:checked').value,
    note: v('co-note'),
  };
  if (fulfillment === 'FULFILLMENT_DELIVERY') {
    body.deliveryAddress = { line1: v('co-line1'), line2: v('co-line2'), city: v('co-city'), postalCode: v('co-postal'), instructions: v('co-instructions') };
  }
  const json = JSON.stringify(body);
  if (json !== attempt.body) {
    attempt.key = newKey();
    attempt.body = json;
  }
  busy(button, true);
  try {
    const { data } = await api('POST', '/v1/orders', { body, headers: { 'Idempotency-Key': attempt.key }, needsAuth: true });
    attempt.key = '';
    attempt.body = '';
    shop.cart = { pizzaId: '', size: '', toppingIds: [] };
    saveCart();
    renderMenu(); // an empty builder for the next pizza
    $('co-note').value = '';
    location.hash = '#/orders/' + encodeURIComponent((data.order || data).id);
  } catch (err) {
    if (err.httpStatus !== 401) showErrors(form, err);
  } finally {
    busy(button, false);
  }
}

// ---------------------------------------------------------------- one order

// heard: the status last read out in the live region.
const follow = { id: '', stop: null, order: null, heard: '', cancelling: false };

function stopWatch() {
  if (follow.stop) follow.stop();
  follow.stop = null;
}

function showOrder(id) {
  if (!auth.token()) {
    needSignIn('#/orders/' + encodeURIComponent(id), 'Sign in to see your order.');
    return false;
  }
  if (follow.id !== id || !follow.stop) {
    stopWatch();
    follow.id = id;
    follow.order = null;
    follow.heard = '';
    $('order-announce').textContent = '';
    $('order-body').replaceChildren(el('p', { class: 'muted', text: 'Loading your order…' }));
    $('cancel').hidden = true;
    $('cancel-error').hidden = true;
    $('order-conn').className = 'conn';
    $('order-conn').textContent = 'Connecting…';
    startWatch(id);
  }
  return true;
}

function startWatch(id) {
  const conn = $('order-conn');
  const banner = $('order-banner');
  follow.stop = watch(`/v1/orders/${encodeURIComponent(id)}:watch`, auth.token(), {
    onOpen: () => {},
    onResult: (r) => {
      const o = r.order;
      if (!o || o.id !== id) return; // a keep-alive
      if (follow.order && Number(o.revision || 0) < Number(follow.order.revision || 0)) return;
      follow.order = o;
    },
    onBatch: () => {
      if (follow.order) renderOrder(follow.order);
      if (follow.order && FINAL.has(follow.order.status)) {
        stopWatch();
        conn.className = 'conn';
        conn.textContent = 'Final';
      }
    },
    onState: (state, detail) => {
      if (!follow.stop && state !== 'live') return;
      conn.className = 'conn ' + state;
      conn.textContent = { live: 'Live', connecting: 'Connecting…', down: 'Reconnecting' }[state] || state;
      banner.hidden = state !== 'down';
      banner.textContent = state === 'down' ? detail : '';
    },
    onUnauthorized: (err) => {
      follow.stop = null;
      if (err.httpStatus === 401) expired();
      else {
        $('order-body').replaceChildren(el('p', { class: 'error', text: err.message }));
      }
    },
    // Not found (another customer's order, a mistyped link): no retry
    // will find it, so say so once.
    onFatal: (err) => {
      follow.stop = null;
      conn.className = 'conn';
      conn.textContent = 'Not found';
      banner.hidden = true;
      banner.textContent = '';
      $('cancel').hidden = true;
      $('order-body').replaceChildren(el('p', { class: 'error', role: 'alert', text:
        err.code === 5 || err.httpStatus === 404
          ? 'This order was not found. If you placed it with another account, sign in with that one.'
          : `This order cannot be shown: ${err.message}` }));
    },
  });
}

function renderOrder(o) {
  const p = o.price || {};
  const toppings = (p.toppings || []).map((t) => t.name);
  const pickup = o.fulfillment === 'FULFILLMENT_PICKUP';
  const reached = new Map((o.history || []).map((h) => [h.status, h]));
  let steps = pickup ? PICKUP_STEPS : DELIVERY_STEPS;
  const ended = o.status === 'ORDER_STATUS_REJECTED' || o.status === 'ORDER_STATUS_CANCELLED';
  if (ended) steps = [...steps.filter((s) => reached.has(s)), o.status];

  const timeline = el('ol', { id: 'timeline', class: 'timeline', 'aria-label': 'Order progress' },
    ...steps.map((s) => {
      const h = reached.get(s);
      const current = s === o.status;
      const cls = ['step', h ? 'done' : 'todo', current ? 'current' : '', (s === 'ORDER_STATUS_REJECTED' || s === 'ORDER_STATUS_CANCELLED') ? 'bad' : ''].join(' ').trim();
      return el('li', { class: cls, dataset: { status: s }, 'aria-current': current ? 'step' : null },
        el('span', { class: 'label', text: STATUS[s] || s }),
        h ? el('time', { datetime: h.changeTime, text: clockTime(parseTime(h.changeTime)) }) : el('span', { class: 'muted', text: 'not yet' }),
        h && h.reason ? el('span', { class: 'reason', text: h.reason }) : null);
    }));

  const eta = parseTime(o.estimatedReadyTime);
  const parts = [
    el('p', { id: 'order-status', class: 'status-line' }, el('strong', { text: STATUS[o.status] || o.status })),
    o.status === 'ORDER_STATUS_REJECTED' ? el('p', { id: 'reject-reason', class: 'error', text: `The kitchen could not make it: ${o.rejectionReason || 'no reason given'}` }) : null,
    eta && !FINAL.has(o.status) && !['ORDER_STATUS_READY', 'ORDER_STATUS_OUT_FOR_DELIVERY'].includes(o.status)
      ? el('p', { id: 'eta' }, 'Estimated ready at ', el('time', { datetime: o.estimatedReadyTime, text: clockTime(eta) })) : null,
    timeline,
    el('dl', { class: 'facts' },
      el('dt', { text: 'Pizza' }), el('dd', { text: `${sizeName(o.item && o.item.size)} ${p.pizza ? p.pizza.name : (o.item && o.item.pizzaId)}` }),
      el('dt', { text: 'Toppings' }), el('dd', { text: toppings.length ? toppings.join(', ') : 'none' }),
      el('dt', { text: 'Total' }), el('dd', { text: money(p.total) }),
      el('dt', { text: pickup ? 'Pickup' : 'Delivery to' }), el('dd', { text: pickup ? 'at the counter' : addressLine(o.deliveryAddress) }),
      el('dt', { text: 'Payment' }), el('dd', { text: o.paymentMethod === 'PAYMENT_METHOD_CARD' ? 'Card at handover' : 'Cash at handover' }),
      o.note ? el('dt', { text: 'Note' }) : null, o.note ? el('dd', { text: o.note }) : null,
      el('dt', { text: 'Order' }), el('dd', { class: 'ident', text: o.id })),
  ];
  $('order-body').replaceChildren(...parts.filter(Boolean));
  const placeOnCancel = follow.cancelling && cancelFocused();
  $('cancel').hidden = !CANCELLABLE.has(o.status);
  // Hiding the button pressed (or disabled while its call runs) drops the
  // keyboard's place to the page's start. The live stream can bring the
  // cancellation before the cancel call's own answer does: whichever comes
  // first keeps the place on the order's heading.
  if (placeOnCancel && $('cancel').hidden) focusOrderHeading();
  // The body is rebuilt, which no screen reader reads out: a new step is
  // said in the live region (not the first one: the page says that).
  if (follow.heard && follow.heard !== o.status) {
    const reason = o.status === 'ORDER_STATUS_REJECTED' && o.rejectionReason ? `: ${o.rejectionReason}` : '';
    $('order-announce').textContent = `Your order: ${STATUS[o.status] || o.status}${reason}.`;
  }
  follow.heard = o.status;
}

const addressLine = (a) => (a ? [a.line1, a.line2, [a.postalCode, a.city].filter(Boolean).join(' ')].filter(Boolean).join(', ') : '');

// cancelFocused reports whether the keyboard's place is on the Cancel
// button, or was (a disabled or hidden button leaves it on the page).
const cancelFocused = () => !document.activeElement || document.activeElement === document.body ||
  document.activeElement === $('cancel');

function focusOrderHeading() {
  $('h-order').setAttribute('tabindex', '-1');
  $('h-order').focus();
}

async function onCancel() {
  const button = $('cancel');
  const box = $('cancel-error');
  box.hidden = true;
  busy(button, true);
  follow.cancelling = true;
  try {
    const { data } = await api('POST', `/v1/orders/${encodeURIComponent(follow.id)}:cancel`, { body: {}, needsAuth: true });
    const o = data.order || data;
    if (o && o.id === follow.id) {
      follow.order = o;
      renderOrder(o);
    }
    // The button is gone now: keep the place on the order's heading.
    if ($('cancel').hidden && cancelFocused()) focusOrderHeading();
  } catch (err) {
    if (err.httpStatus === 401) return;
    box.textContent = err.httpStatus === 409 ? `It can no longer be cancelled: ${err.message}` : err.message;
    box.hidden = false;
    box.focus();
  } finally {
    follow.cancelling = false;
    busy(button, false);
  }
}

// ---------------------------------------------------------------- history

// loading: a page is on its way; Older and Newer wait for it, so that a
// double click turns one page.
const pages = { tokens: [''], at: 0, seq: 0, loading: false };

async function showHistory(reset) {
  if (!auth.token()) {
    needSignIn('#/orders', 'Sign in to see your orders.');
    return false;
  }
  if (reset) {
    pages.tokens = [''];
    pages.at = 0;
  }
  const pageToken = pages.tokens[pages.at];
  const q = new URLSearchParams({ pageSize: '10' });
  if (pageToken) q.set('pageToken', pageToken);
  $('orders-error').hidden = true;
  const seq = ++pages.seq;
  pages.loading = true;
  for (const b of [$('orders-more'), $('orders-newer')]) b.setAttribute('aria-disabled', 'true');
  try {
    const { data } = await api('GET', '/v1/orders?' + q, { needsAuth: true });
    if (seq !== pages.seq) return true; // a newer page, or another customer, meanwhile
    const orders = data.orders || [];
    $('orders-list').replaceChildren(...orders.map((o) => {
      const p = o.price || {};
      const placed = parseTime(o.createTime);
      return el('li', { dataset: { id: o.id } },
        el('a', { href: '#/orders/' + encodeURIComponent(o.id) },
          el('span', { class: 'what', text: `${sizeName(o.item && o.item.size)} ${p.pizza ? p.pizza.name : ''}` }),
          el('span', { class: 'status', text: STATUS[o.status] || o.status }),
          el('time', { datetime: o.createTime, text: placed ? placed.toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' }) : '' }),
          el('span', { class: 'total', text: money(p.total) })));
    }));
    $('orders-empty').hidden = orders.length > 0 || pages.at > 0;
    pages.tokens[pages.at + 1] = data.nextPageToken || '';
    // The button pressed may go (the last page): keep the place.
    const a = document.activeElement;
    $('orders-more').hidden = !data.nextPageToken;
    $('orders-newer').hidden = pages.at === 0;
    if (a && (a.id === 'orders-more' || a.id === 'orders-newer') && a.hidden) {
      $('h-orders').setAttribute('tabindex', '-1');
      $('h-orders').focus();
    }
  } catch (err) {
    if (err.httpStatus === 401 || seq !== pages.seq) return false;
    $('orders-error').textContent = err.message;
    $('orders-error').hidden = false;
  } finally {
    if (seq === pages.seq) {
      pages.loading = false;
      for (const b of [$('orders-more'), $('orders-newer')]) b.removeAttribute('aria-disabled');
    }
  }
  return true;
}

// ---------------------------------------------------------------- routing

function notice(text) {
  const n = $('notice');
  n.textContent = text;
  n.hidden = !text;
  clearTimeout(notice.timer);
  if (text) notice.timer = setTimeout(() => { n.hidden = true; }, 8000);
}

let firstRoute = true;

function route() {
  const hash = location.hash || '#/';
  let view = 'menu';
  let ok = true;
  if (hash === '#/signin') view = 'signin';
  else if (hash === '#/register') view = 'register';
  else if (hash === '#/checkout') {
    view = 'checkout';
    ok = renderCheckout();
  } else if (hash === '#/orders') {
    view = 'orders';
    ok = Boolean(auth.token());
    showHistory(true);
  } else if (hash.startsWith('#/orders/')) {
    view = 'order';
    ok = showOrder(decodeURIComponent(hash.slice('#/orders/'.length)));
  }
  if (!ok) return;
  if (view !== 'order') stopWatch();
  for (const s of document.querySelectorAll('.view')) s.hidden = s.id !== 'view-' + view;
  for (const a of document.querySelectorAll('.storenav a')) {
    if (a.getAttribute('href') === (view === 'menu' ? '#/' : '#/' + view)) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // Move focus to the new view's heading, for keyboard and screen reader
  // users, except on the first load.
  if (!firstRoute) {
    const h = document.querySelector(`#view-${view} h2`);
    if (h) {
      h.setAttribute('tabindex', '-1');
      h.focus();
    }
  }
  firstRoute = false;
  document.title = { menu: 'Pizzashop', signin: 'Sign in · Pizzashop', register: 'Create an account · Pizzashop', checkout: 'Checkout · Pizzashop', orders: 'My orders · Pizzashop', order: 'Your order · Pizzashop' }[view];
}

// ---------------------------------------------------------------- start

async function start() {
  $('builder').addEventListener('change', onBuilderChange);
  $('builder').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (shop.price) location.hash = '#/checkout';
  });
  $('signin-form').addEventListener('submit', onSignIn);
  $('register-form').addEventListener('submit', onRegister);
  $('checkout-form').addEventListener('submit', onCheckout);
  $('checkout-form').addEventListener('change', (ev) => { if (ev.target.name === 'fulfillment') toggleAddress(); });
  $('signout').addEventListener('click', signOut);
  $('cancel').addEventListener('click', onCancel);
  $('orders-more').addEventListener('click', () => {
    if (pages.loading) return;
    pages.at++;
    showHistory(false);
  });
  $('orders-newer').addEventListener('click', () => {
    if (pages.loading) return;
    pages.at = Math.max(0, pages.at - 1);
    showHistory(false);
  });
  window.addEventListener('hashchange', route);
  renderIdentity();
  route();

  // A stored token may have expired since the last visit: check it once.
  // Its answer is about the customer of that token only: one who signed
  // out meanwhile, or another who signed in, is left alone.
  const stored = auth.token();
  if (stored) {
    api('GET', '/v1/customers/me', { needsAuth: true })
      .then(({ data }) => {
        if (auth.token() !== stored) return;
        auth.set(stored, data.customer || data);
        renderIdentity();
      })
      .catch(() => {});
  }

  await loadMenu();
  // Also in a background tab: a customer switching back sees the menu as
  // it is, and an unchanged menu costs a 304.
  setInterval(loadMenu, MENU_POLL_MS);
  document.addEventListener('visibilitychange', () => { if (!document.hidden) loadMenu(); });
}

start();
