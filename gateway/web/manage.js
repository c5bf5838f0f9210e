// The menu manager: managers (admin role) edit the names, descriptions and
// three prices of pizzas and toppings, add new ones and mark them sold out.
// Every change is a call to the menu API; the page then shows the menu as
// the API returns it.

import { ApiError, el, readError, session, toast } from './board.js';

const $ = (id) => document.getElementById(id);
const tokens = session('admin');
const SIZES = [['SIZE_SMALL', 'Small'], ['SIZE_MEDIUM', 'Medium'], ['SIZE_LARGE', 'Large']];

let currency = 'USD';
let digits = 2;

async function api(method, path, body) {
  let resp;
  try {
    resp = await fetch(path, {
      method,
      headers: { 'Authorization': 'Bearer ' + tokens.get(), 'Content-Type': 'application/json', 'Accept': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, { message: 'network error: the gateway could not be reached' });
  }
  if (!resp.ok) {
    const err = await readError(resp);
    if (err.unauthorized) showSignIn(`The token was refused: ${err.message}`);
    throw err;
  }
  return resp.json();
}

// Prices are typed in major units ("12.50") and sent in minor units.
const toMajor = (minor) => (Number(minor || 0) / 10 ** digits).toFixed(digits);

function toMinor(text, label) {
  const s = String(text).trim().replace(',', '.');
  const example = digits > 0 ? `12.${'5'.padEnd(digits, '0')}` : '1250';
  if (s === '') throw new Error(`${label} price is required: a number like ${example}`);
  if (!/^\d+(\.\d+)?$/.test(s)) throw new Error(`${label} price "${text}" is not a number like ${example}`);
  const decimals = (s.split('.')[1] || '').replace(/0+$/, '').length;
  if (decimals > digits) {
    throw new Error(digits === 0
      ? `${label} price "${text}" has decimals; ${currency} prices are whole numbers`
      : `${label} price "${text}" has ${decimals} decimals; ${currency} prices have at most ${digits}`);
  }
  const n = Math.round(Number(s) * 10 ** digits);
  if (n <= 0) throw new Error(`${label} price must be more than zero`);
  return n;
}

/**
 * pricesFrom reads one price per size from inputs, in the order of SIZES:
 * the prices to send, and a problem ({input, text}) for each input that
 * does not hold one.
 */
function pricesFrom(inputs) {
  const prices = [];
  const problems = [];
  SIZES.forEach(([size, label], i) => {
    try {
      prices.push({ size, amountMinor: String(toMinor(inputs[i].value, label)) });
    } catch (err) {
      problems.push({ input: inputs[i], text: err.message });
    }
  });
  return { prices, problems };
}

function field(id, label, value, { textarea = false, ...attrs } = {}) {
  const input = el(textarea ? 'textarea' : 'input', { id, name: id, ...attrs });
  input.value = value || '';
  return el('div', { class: 'field' }, el('label', { for: id, text: label }), input);
}

/** itemRow is one pizza or topping: its fields, Save, and the sold-out switch. */
function itemRow(kind, item) {
  const p = `${kind}-${item.id}`;
  const prices = Object.fromEntries((item.prices || []).map((x) => [x.size, x.amountMinor]));
  const priceFields = SIZES.map(([size, label]) => field(`${p}-${size.toLowerCase()}`, `${label} (${currency})`, toMajor(prices[size]), { inputmode: 'decimal', required: true }));
  const error = el('p', { class: 'error', role: 'alert', hidden: true });
  const form = el('form', { novalidate: true, 'aria-label': `${item.name}` },
    field(`${p}-name`, 'Name', item.name, { required: true, maxlength: 60 }),
    kind === 'pizza' ? field(`${p}-description`, 'Description', item.description, { textarea: true, rows: 2, maxlength: 300 }) : null,
    el('div', { class: 'prices3' }, ...priceFields),
    error,
    el('div', { class: 'actions' },
      el('span', { class: 'state ' + (item.available ? 'on' : 'off'), text: item.available ? 'Available' : 'Sold out' }),
      el('button', { id: `${p}-save`, class: 'btn', type: 'submit', text: 'Save' }),
      el('button', { id: `${p}-toggle`, class: 'btn plain toggle', type: 'button', 'aria-pressed': item.available ? 'false' : 'true', text: item.available ? 'Mark sold out' : 'Mark available' })));

  const path = `/v1/menu/${kind === 'pizza' ? 'pizzas' : 'toppings'}/${encodeURIComponent(item.id)}`;
  const send = async (body, what) => {
    error.hidden = true;
    // Disabling the pressed button takes the focus from it: note it to
    // give it back to the same button of the row the reload draws.
    const focused = document.activeElement && document.activeElement.id;
    const refocus = () => { if (focused && $(focused)) $(focused).focus(); };
    for (const b of form.querySelectorAll('button')) b.disabled = true;
    // The change is based on the item as this page read it: if another
    // manager changed it since, the menu refuses it (409) rather than let
    // this form put back the values it was loaded with.
    if (item.updateTime) body.updateTime = item.updateTime;
    try {
      await api('PATCH', path, body);
      delete form.dataset.dirty; // saved: the reload shows what was stored
      toast(what);
      await load();
      refocus();
    } catch (err) {
      if (err.reason === 'MENU_ITEM_CHANGED') {
        await changedElsewhere(kind, item);
        return;
      }
      error.textContent = err.message;
      error.hidden = false;
      for (const b of form.querySelectorAll('button')) b.disabled = false;
      refocus();
    }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const { prices, problems } = pricesFrom(priceFields.map((f) => f.querySelector('input')));
    if (problems.length) { // a row has one alert: the first price's problem
      error.textContent = problems[0].text;
      error.hidden = false;
      return;
    }
    const body = { name: $(`${p}-name`).value.trim(), prices };
    if (kind === 'pizza') body.description = $(`${p}-description`).value.trim();
    send(body, `${body.name} saved.`);
  });
  form.addEventListener('input', () => { form.dataset.dirty = 'true'; });
  form.querySelector('.toggle').addEventListener('click', () => {
    send({ available: !item.available }, `${item.name} is ${item.available ? 'sold out' : 'available again'}.`);
  });
  return el('li', { class: 'manage-item' + (item.available ? '' : ' soldout'), dataset: { id: item.id, key: p, updated: item.updateTime || '' } }, form);
}

/**
 * changedElsewhere shows the menu as it is now after a change was refused
 * because someone else changed the item first, and says so on its row.
 */
async function changedElsewhere(kind, item) {
  try {
    await load();
  } catch (err) {
    toast(`Could not reload the menu: ${err.message}`, 'error');
    return;
  }
  const list = $(kind === 'pizza' ? 'pizzas' : 'toppings');
  const error = list.querySelector(`li[data-id="${CSS.escape(item.id)}"] .error`);
  if (!error) return;
  error.textContent = `${item.name} was changed by someone else after this page loaded. The form now shows the current values: make your change again.`;
  error.hidden = false;
}

async function load() {
  const data = await api('GET', '/v1/menu');
  const m = data.menu || data;
  currency = m.currencyCode || 'USD';
  digits = new Intl.NumberFormat(undefined, { style: 'currency', currency }).resolvedOptions().maximumFractionDigits;
  $('currency').textContent = currency;
  const keep = document.activeElement && document.activeElement.id;
  const drafts = unsavedEdits();
  $('pizzas').replaceChildren(...(m.pizzas || []).map((p) => itemRow('pizza', p)));
  $('toppings').replaceChildren(...(m.toppings || []).map((t) => itemRow('topping', t)));
  restoreEdits(drafts);
  if (keep && $(keep)) $(keep).focus();
}

/**
 * unsavedEdits collects what the manager has typed into rows not saved
 * yet, so a reload after another row's save does not throw it away.
 */
function unsavedEdits() {
  const drafts = new Map();
  for (const li of document.querySelectorAll('#pizzas li, #toppings li')) {
    const form = li.querySelector('form');
    if (!form || !form.dataset.dirty) continue;
    const values = Object.fromEntries([...form.querySelectorAll('input, textarea')].map((f) => [f.id, f.value]));
    drafts.set(li.dataset.key, { updated: li.dataset.updated, values });
  }
  return drafts;
}

/**
 * restoreEdits puts unsaved edits back into their rows, unless the item
 * changed in the meantime: then they were typed over values that are gone,
 * and saving them would put those back, so the row says so instead.
 */
function restoreEdits(drafts) {
  for (const [key, draft] of drafts) {
    const li = document.querySelector(`li[data-key="${CSS.escape(key)}"]`);
    if (!li) continue;
    const form = li.querySelector('form');
    if (li.dataset.updated !== draft.updated) {
      const error = li.querySelector('.error');
      error.textContent = 'Someone else changed this item while you were editing it. The form now shows the current values: make your change again.';
      error.hidden = false;
      continue;
    }
    for (const [id, value] of Object.entries(draft.values)) {
      const f = form.querySelector(`#${CSS.escape(id)}`);
      if (f) f.value = value;
    }
    form.dataset.dirty = 'true';
  }
}

// The add forms' price inputs, in the order of SIZES: np-small, nt-large...
const SIZE_IDS = ['small', 'medium', 'large'];

const sentence = (s) => (s && !/[.!?]$/.test(s) ? s + '.' : s);

/**
 * addFormField finds the input of an add form that a field violation of the
 * menu service names ("pizza.name", "topping.prices[2].amount_minor"), and
 * the words that introduce its message; null for a field the form has not,
 * such as the id the service derives from the name.
 */
function addFormField(kind, prefix, field) {
  const f = field.startsWith(`${kind}.`) ? field.slice(kind.length + 1) : field;
  if (f === 'name') return { input: $(`${prefix}-name`), label: 'Name' };
  if (f === 'description' && kind === 'pizza') return { input: $('np-description'), label: 'Description' };
  // The prices are sent in the order of SIZES: prices[i] is the i-th input.
  const m = /^prices\[(\d+)\]/.exec(f);
  if (m && Number(m[1]) < SIZES.length) {
    const i = Number(m[1]);
    return { input: $(`${prefix}-${SIZE_IDS[i]}`), label: `${SIZES[i][1]} price`, minor: f.endsWith('.amount_minor') };
  }
  return null;
}

/**
 * inMajorUnits rewrites the amounts in a price refusal of the menu service,
 * which counts in minor units ("must be at most 100000, got 500000"), as a
 * manager types them ("must be at most 1000.00, got 5000.00").
 */
const inMajorUnits = (message) => message.replace(/-?\b\d+\b/g, (n) => toMajor(n));

/** clearFieldError empties the error box of one field of an add form. */
function clearFieldError(input) {
  input.removeAttribute('aria-invalid');
  const box = $(`${input.id}-err`);
  if (box) {
    box.textContent = '';
    box.hidden = true;
  }
}

/** clearAddErrors hides every field error and the alert of an add form. */
function clearAddErrors(form, error) {
  for (const input of form.querySelectorAll('input, textarea')) clearFieldError(input);
  error.textContent = '';
  error.hidden = true;
}

/**
 * showAddErrors puts each problem ({input, text}) in the error box beside
 * its input and marks the input invalid, the rest (strings) in the form's
 * alert, and moves the focus to the first invalid field of the form, else
 * to the alert.
 */
function showAddErrors(form, error, problems, rest) {
  clearAddErrors(form, error);
  for (const { input, text } of problems) {
    const box = $(`${input.id}-err`);
    input.setAttribute('aria-invalid', 'true');
    box.textContent = (box.textContent ? box.textContent + ' ' : '') + sentence(text);
    box.hidden = false;
  }
  if (rest.length) {
    error.textContent = rest.map(sentence).join(' ');
    error.hidden = false;
  }
  const first = form.querySelector('[aria-invalid="true"]');
  if (first) {
    first.focus();
  } else if (rest.length) {
    error.setAttribute('tabindex', '-1');
    error.focus();
  }
}

/**
 * serverProblems sorts the refusal of an add into the problems of the
 * form's fields and the rest: a refusal without field violations, or
 * violations of fields the form has not, go to the form's alert.
 */
function serverProblems(kind, prefix, err) {
  const fields = err instanceof ApiError ? err.fields : [];
  const problems = [];
  const rest = [];
  for (const { field, message } of fields) {
    const f = addFormField(kind, prefix, field);
    if (f && f.input) problems.push({ input: f.input, text: `${f.label} ${f.minor ? inMajorUnits(message) : message}` });
    else rest.push(`${field}: ${message}`);
  }
  if (!fields.length) rest.push(err.message);
  return { problems, rest };
}

function addForm(formId, kind) {
  const form = $(formId);
  const error = $(`${formId}-error`);
  const prefix = kind === 'pizza' ? 'np' : 'nt';
  // Editing a field takes its error away; the others stay until the next submit.
  form.addEventListener('input', (ev) => {
    if (ev.target.getAttribute && ev.target.getAttribute('aria-invalid') === 'true') clearFieldError(ev.target);
  });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    clearAddErrors(form, error);
    // Every price is checked, each refusal shown beside its own field.
    const { prices, problems } = pricesFrom(SIZE_IDS.map((s) => $(`${prefix}-${s}`)));
    if (problems.length) {
      showAddErrors(form, error, problems, []);
      return;
    }
    const body = { name: $(`${prefix}-name`).value.trim(), available: true, prices };
    if (kind === 'pizza') body.description = $('np-description').value.trim();
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      await api('POST', `/v1/menu/${kind === 'pizza' ? 'pizzas' : 'toppings'}`, body);
      form.reset();
      toast(`${body.name} added.`);
      await load();
    } catch (err) {
      if (err.unauthorized) return; // the sign-in form says so
      const { problems: fieldProblems, rest } = serverProblems(kind, prefix, err);
      showAddErrors(form, error, fieldProblems, rest);
    } finally {
      button.disabled = false;
    }
  });
}

function showSignIn(message) {
  tokens.clear();
  $('board').hidden = true;
  $('signout').hidden = true;
  $('signin').hidden = false;
  $('signin-error').hidden = !message;
  $('signin-error').textContent = message || '';
  $('token').value = '';
  $('token').focus();
}

async function showBoard() {
  $('signin').hidden = true;
  $('board').hidden = false;
  $('signout').hidden = false;
  try {
    await load();
  } catch (err) {
    if (!err.unauthorized) toast(`The menu could not be loaded: ${err.message}`, 'error');
  }
}

/**
 * tokenProblem reads the token's claims to catch a wrong or expired token
 * at once; the menu service checks it again on every change.
 */
function tokenProblem(token) {
  try {
    const claims = JSON.parse(atob(token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')));
    if (claims.role !== 'admin') return `This token is for the ${claims.role} role; the menu manager needs an admin token.`;
    if (claims.exp && claims.exp * 1000 <= Date.now()) return 'This token has expired. Mint a new one.';
    return '';
  } catch {
    return 'This is not a Pizzashop token.';
  }
}

$('signin-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const token = $('token').value.trim().replace(/^Bearer\s+/i, '');
  if (!token) return;
  const problem = tokenProblem(token);
  if (problem) {
    showSignIn(problem);
    return;
  }
  tokens.set(token);
  showBoard();
});
$('signout').addEventListener('click', () => showSignIn(''));
addForm('add-pizza', 'pizza');
addForm('add-topping', 'topping');
if (tokens.get() && !tokenProblem(tokens.get())) showBoard();
else showSignIn(tokens.get() ? tokenProblem(tokens.get()) : '');
