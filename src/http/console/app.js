// wechat-bridge console: plain JavaScript, no framework, no build step.
'use strict';

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const ROUTES = ['conversations', 'messages', 'health', 'demo'];
const TOKEN_KEY = 'wechat-bridge-token';
const TICKS = { stored: '○', delivered: '✓', failed: '✕' };

const state = {
  session: null,
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  route: 'conversations',
  convs: new Map(),   // contact_id -> conversation summary (server order: most recent first)
  msgs: new Map(),    // message id -> latest known message
  recent: [],         // [{at, m}] from the stream, replayed over fetches that raced with it
  selected: null,     // contact_id open on the Conversations page
  demoContact: null,  // contact_id behind the phone's OpenID
  filters: null,      // Messages filters last applied (null: table not loaded yet)
  stream: null, streamAttempt: 0, healthTimer: null, convTimer: null,
};

// ---- helpers ----

// h('a', {href, class}, 'text', child…): build an element; strings become text, never HTML.
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, String(v));
  }
  for (const kid of kids.flat()) if (kid != null && kid !== false) el.append(kid instanceof Node ? kid : String(kid));
  return el;
}

function ago(ms) {
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return s < 86400 ? `${Math.round(s / 3600)} h ago` : `${Math.round(s / 86400)} d ago`;
}
// <time>: 'rel' (kept fresh every 30 s), 'full' date and time, or the clock time (with the date if not today).
function timeEl(ms, mode) {
  if (!ms) return h('span', { class: 'muted' }, 'never');
  const d = new Date(ms);
  const text = mode === 'rel' ? ago(ms)
    : mode === 'full' || d.toDateString() !== new Date().toDateString()
      ? d.toLocaleString([], { dateStyle: 'short', timeStyle: 'medium' })
      : d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return h('time', { datetime: d.toISOString(), title: d.toLocaleString(), 'data-rel': mode === 'rel' ? ms : null }, text);
}
// Only http(s) links (absolute or same-origin): never javascript: or data: from a payload.
function safeUrl(url) {
  try {
    const u = new URL(url, location.href);
    return typeof url === 'string' && url && /^https?:$/.test(u.protocol) ? u.href : null;
  } catch { return null; }
}
const link = (url, text) => h('a', { href: url, target: '_blank', rel: 'noopener noreferrer' }, text);
const errorText = (m) => [m.error_code, m.last_error].filter(Boolean).join(': ');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const byId = (root, id) => root.querySelector(`[data-id="${CSS.escape(id)}"]`);
const remember = (list) => list.forEach((m) => state.msgs.set(m.id, m));
function notify(text) {
  Object.assign($('#notice'), { textContent: text, hidden: false });
  clearTimeout(notify.timer);
  notify.timer = setTimeout(() => { $('#notice').hidden = true; }, 6000);
}
class AuthError extends Error {}
const report = (err) => { if (!(err instanceof AuthError)) notify(err.message || String(err)); };

// ---- API: JSON in and out; a 401 shows the login form ----

async function api(path, { method = 'GET', body } = {}) {
  const headers = {};
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  let data = {};
  try { if (text) data = JSON.parse(text); } catch { data = { error: text }; }
  if (res.status === 401) {
    showLogin(state.token ? 'The token was refused. Sign in again.' : '');
    throw new AuthError('unauthorized');
  }
  if (!res.ok) throw Object.assign(new Error(data?.error || `${res.status} ${res.statusText}`), { status: res.status });
  return data;
}

// ---- messages: one bubble markup for every thread, one row markup for the table ----

// What a message says: text, a summary like [image] (linked when there is a URL), a link title, an event name.
function content(m) {
  const p = m.payload;
  if (p == null || typeof p !== 'object') return p == null ? `[${m.msg_type}]` : String(p);
  if (m.direction === 'inbound') {
    if (m.msg_type === 'event' || p.event) return `[event: ${p.event?.name ?? 'unknown'}]`;
    const text = p.content || `[${p.msg_type || m.msg_type}]`;
    const url = safeUrl(p.media?.url);
    return url ? link(url, text) : text;
  }
  const msg = p.message || {};
  const url = safeUrl(msg.url);
  const media = safeUrl(msg.media_url);
  const summary = `[${msg.msg_type || m.msg_type}]`;
  if (msg.title && url) return link(url, msg.title);
  return msg.content || (media ? link(media, summary) : summary);
}

// The status mark; `quiet` hides it from screen readers where the status is also written out.
const tick = (status, quiet) => h('span', { class: `tick ${status}`, title: status, 'data-status': status,
  role: quiet ? null : 'img', 'aria-label': quiet ? null : status, 'aria-hidden': quiet ? 'true' : null }, TICKS[status] || '?');
const retryButton = (m) => h('button', { type: 'button', class: 'retry', 'data-id': m.id }, 'Retry');

// view 'agent': customer left, agent right, ticks. view 'phone': the customer's own messages right, no ticks.
function bubble(m, view) {
  const phone = view === 'phone';
  const who = m.direction === 'inbound' ? (phone ? 'You' : 'Customer') : 'Agent';
  const el = h('li', { class: `bubble ${m.direction}`, 'data-id': m.id, 'data-status': m.status,
    'data-created': m.created_at, tabindex: -1 },
  h('div', { class: 'box' }, h('span', { class: 'visually-hidden' }, `${who}: `),
    h('div', { class: 'content' }, content(m)),
    h('span', { class: 'meta' }, timeEl(m.created_at), phone ? null : tick(m.status))));
  if (m.status === 'failed' && !phone) el.append(h('p', { class: 'error-text' }, errorText(m) || 'failed'), retryButton(m));
  return el;
}

const row = (m) => h('tr', { 'data-id': m.id, 'data-status': m.status, 'data-created': m.created_at, tabindex: -1 },
  h('td', { class: 'nowrap' }, timeEl(m.created_at, 'full')),
  h('td', {}, m.direction),
  h('td', { class: 'mono' }, state.convs.get(m.contact_id)?.openid ?? `#${m.contact_id}`),
  h('td', {}, m.msg_type),
  h('td', { class: 'content' }, content(m)),
  h('td', { class: 'nowrap' }, tick(m.status, true), ' ', m.status),
  h('td', { class: 'num' }, m.attempts),
  h('td', { class: 'error-text' }, errorText(m)),
  h('td', {}, m.status === 'failed' ? retryButton(m) : ''));

// The phone only sees the agent's messages that WeChat accepted.
const onPhone = (m) => m.direction === 'inbound' || m.status === 'delivered';

// Insert or update an element by data-id. New ones go in time order: oldest first in threads,
// newest first in the table. Keyboard focus survives the replacement.
function upsert(box, m, render, newestFirst = false) {
  const old = byId(box, m.id);
  if (old) {
    const hadFocus = old.contains(document.activeElement);
    const el = render(m);
    old.replaceWith(el);
    if (hadFocus) (el.querySelector('button') || el).focus();
    return;
  }
  const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 60;
  box.querySelector('.empty')?.remove();
  const later = (el) => (newestFirst ? -1 : 1) * (Number(el.dataset.created) - m.created_at) > 0;
  const next = [...box.children].find(later);
  box.insertBefore(render(m), next || null);
  if (!newestFirst && atBottom) box.scrollTop = box.scrollHeight;
}
function upsertBubble(list, m, view) {
  if (view === 'phone' && !onPhone(m)) byId(list, m.id)?.remove();
  else upsert(list, m, (x) => bubble(x, view));
}
// Fill a thread or the table; `empty` is the placeholder element when there is nothing to show.
function fill(box, messages, render, empty) {
  box.replaceChildren(...messages.map(render));
  if (!messages.length) box.append(empty);
  box.scrollTop = box.scrollHeight;
}
const fillThread = (list, messages, view, text = 'No messages yet.') => fill(list,
  view === 'phone' ? messages.filter(onPhone) : messages, (m) => bubble(m, view), h('li', { class: 'empty muted' }, text));

// A contact's messages, oldest first.
async function fetchThread(contactId) {
  const data = await api(`/api/messages?contact_id=${contactId}&limit=300`);
  remember(data.messages);
  return data.messages.reverse();
}
// Stream events that arrived while a fetch was in flight win over its (possibly older) answer.
function replay(since) {
  for (const { at, m } of state.recent) if (at >= since) applyMessage(m);
}
// A message was stored or changed: update every view that shows it.
function applyMessage(m) {
  if (state.msgs.get(m.id)?.status === 'delivered' && m.status !== 'delivered') return; // delivered is final
  state.msgs.set(m.id, m);
  if (m.contact_id === state.selected) upsertBubble($('#thread'), m, 'agent');
  const body = $('#messages-body');
  if (byId(body, m.id) || (state.filters && matchesFilters(m))) upsert(body, m, row, true);
  if (m.contact_id === state.demoContact) {
    upsertBubble($('#agent-thread'), m, 'agent');
    upsertBubble($('#phone-thread'), m, 'phone');
  }
}

// ---- 1. Conversations ----

// Returns true when the demo phone's contact changed (its panes are then reloaded).
// The agent side the bridge runs with, as /api/conversations names it.
const PLATFORM_NAMES = { vonage: 'Vonage', chatwoot: 'Chatwoot', webhook: 'your app' };
const platformName = () => PLATFORM_NAMES[state.platform] || state.platform || 'the platform';
// The contact's conversation on the platform, when it has one (the webhook platform has none).
function platformConversation(c, missing) {
  if (state.platform === 'webhook') return 'webhook events';
  const id = c[`${state.platform}_conversation_id`];
  return `${platformName()} ${id ? `conversation ${id}` : missing}`;
}

async function loadConversations() {
  const data = await api('/api/conversations');
  if (data.platform && data.platform !== state.platform) {
    state.platform = data.platform;
    $('#demo-agent-side').textContent = platformName();
    // Only Vonage has two kinds of agent event to choose from.
    $('#agent-via').hidden = state.platform !== 'vonage';
  }
  state.convs = new Map(data.conversations.map((c) => [c.contact_id, c]));
  renderConvList();
  fillContactSelect();
  return resolveDemoContact();
}

function scheduleConvRefresh() {
  clearTimeout(state.convTimer);
  state.convTimer = setTimeout(() => loadConversations().catch(report), 1000);
}
function renderConvList() {
  const focused = document.activeElement?.closest?.('#conv-list') && document.activeElement.dataset.contactId;
  const items = [...state.convs.values()].map((c) => h('li', {},
    h('button', { type: 'button', class: 'conv', 'data-contact-id': c.contact_id,
      'aria-current': c.contact_id === state.selected ? 'true' : null, onclick: () => selectConv(c.contact_id).catch(report) },
    h('span', { class: 'conv-openid mono' }, c.openid),
    h('span', { class: 'muted small mono' }, platformConversation(c, '(none yet)')),
    h('span', { class: 'conv-meta small' }, `${c.messages} message${c.messages === 1 ? '' : 's'}`,
      c.failed ? h('span', { class: 'badge failed' }, `${c.failed} failed`) : null,
      h('span', { class: 'muted' }, timeEl(c.last_message_at, 'rel'))))));
  $('#conv-list').replaceChildren(...items);
  $('#conv-empty').hidden = items.length > 0;
  if (focused) $(`#conv-list [data-contact-id="${focused}"]`)?.focus();
}

async function selectConv(id) {
  state.selected = id;
  renderConvList();
  const c = state.convs.get(id);
  $('#thread-title').textContent = c ? c.openid : `Contact ${id}`;
  $('#thread-sub').textContent = c ? `${c.account} · ${platformConversation(c, '(none yet)')}` : '';
  const t0 = Date.now();
  const messages = await fetchThread(id);
  if (state.selected !== id) return; // another one was picked meanwhile
  fillThread($('#thread'), messages, 'agent');
  replay(t0);
}

async function showConversations() {
  await loadConversations();
  if (state.selected != null) await selectConv(state.selected);
}
// ---- 2. Messages ----

function fillContactSelect() {
  const sel = $('#f-contact');
  const value = sel.value;
  sel.replaceChildren(h('option', { value: '' }, 'Any'),
    ...[...state.convs.values()].map((c) => h('option', { value: c.contact_id }, c.openid)));
  sel.value = value;
}
function readFilters() {
  const f = { direction: $('#f-direction').value, status: $('#f-status').value, contact_id: $('#f-contact').value };
  for (const k of ['since', 'until']) f[k] = $(`#f-${k}`).value ? new Date($(`#f-${k}`).value).getTime() : ''; // local time
  return f;
}
function matchesFilters(m, f = state.filters) {
  return (!f.direction || m.direction === f.direction) && (!f.status || m.status === f.status)
    && (!f.contact_id || m.contact_id === Number(f.contact_id))
    && (!f.since || m.created_at >= f.since) && (!f.until || m.created_at < f.until);
}

async function loadMessages() {
  const filters = readFilters();
  const q = new URLSearchParams({ limit: 200 });
  for (const [k, v] of Object.entries(filters)) if (v !== '') q.set(k, v);
  const t0 = Date.now();
  const data = await api(`/api/messages?${q}`);
  remember(data.messages);
  state.filters = filters;
  fill($('#messages-body'), data.messages, row,
    h('tr', { class: 'empty' }, h('td', { colspan: 9, class: 'muted' }, 'No messages match these filters.')));
  replay(t0);
}

async function showMessages() {
  await loadConversations(); // contact names and the OpenID select
  return loadMessages();
}
// Retry a failed message and show its new state; the stream brings the later ones.
async function retry(btn) {
  const id = btn.dataset.id;
  Object.assign(btn, { disabled: true, textContent: 'Retrying…' });
  try {
    await api(`/api/messages/${encodeURIComponent(id)}/retry`, { method: 'POST' });
    let m = await api(`/api/messages/${encodeURIComponent(id)}`).catch((err) => { if (err instanceof AuthError) throw err; });
    if (!m && state.msgs.has(id)) m = { ...state.msgs.get(id), status: 'stored' }; // no fresh copy: show it queued
    if (m) applyMessage(m);
  } catch (err) {
    Object.assign(btn, { disabled: false, textContent: 'Retry' });
    report(err);
  }
}

// ---- 3. Health ----

async function loadHealth() {
  const d = await api('/api/health');
  const { messages: n = {}, latency_ms: lat = {}, token = {} } = d;
  const ms = (v) => (v == null ? '–' : `${v} ms`);
  const secs = token.expires_in_secs ?? 0;
  const left = secs < 120 ? `${secs} s` : `${Math.floor(secs / 3600)} h ${Math.floor(secs / 60) % 60} min`;
  const values = {
    'h-outbox': d.outbox_depth, 'h-stored': n.stored, 'h-delivered': n.delivered, 'h-failed': n.failed,
    'h-p50': ms(lat.p50), 'h-p95': ms(lat.p95), 'h-samples': `${lat.samples ?? 0} samples`,
    'h-token': token.cached ? 'cached' : 'not cached',
    'h-token-exp': token.cached ? `expires in ${left}` : 'fetched on the next send',
    'health-updated': `Updated ${new Date().toLocaleTimeString()}.`,
  };
  for (const [id, v] of Object.entries(values)) document.getElementById(id).textContent = v ?? '–';
  $('#h-failed-card').classList.toggle('warn', (n.failed ?? 0) > 0);
  const errors = d.errors || [];
  $('#errors-body').replaceChildren(...(errors.length
    ? errors.map((e) => h('tr', {}, h('td', { class: 'mono' }, e.code), h('td', { class: 'num' }, e.count)))
    : [h('tr', {}, h('td', { colspan: 2, class: 'muted' }, 'No errors.'))]));
}

// Every 5 s while the page is open and the browser tab visible.
function startHealth() {
  stopHealth();
  state.healthTimer = setInterval(() => document.visibilityState === 'visible' && loadHealth().catch(report), 5000);
  return loadHealth();
}
function stopHealth() { clearInterval(state.healthTimer); state.healthTimer = null; }

// ---- 4. Demo ----

const phoneOpenid = () => $('#phone-openid').value.trim();

// Which contact the phone's OpenID is; reload both panes when it changes.
function resolveDemoContact() {
  const c = [...state.convs.values()].find((x) => x.openid === phoneOpenid());
  const id = c ? c.contact_id : null;
  $('#agent-conv').textContent = c ? `${c.openid} · ${platformConversation(c, '(being created)')}`
    : 'No conversation yet: write from the phone first.';
  if (id === state.demoContact) return false;
  state.demoContact = id;
  if (state.route === 'demo') loadDemoThreads().catch(report);
  return true;
}

async function loadDemoThreads() {
  const id = state.demoContact;
  const t0 = Date.now();
  const messages = id == null ? [] : await fetchThread(id);
  if (id !== state.demoContact) return;
  fillThread($('#agent-thread'), messages, 'agent');
  fillThread($('#phone-thread'), messages, 'phone', 'Say hello to the Official Account.');
  replay(t0);
}

async function showDemo() {
  if (!(await loadConversations()) && state.route === 'demo') await loadDemoThreads();
}

function demoStatus(text, isError = false) {
  Object.assign($('#demo-status'), { textContent: text, className: `demo-status${isError ? ' error-text' : ''}` });
}

// Run a demo action with its button disabled; without the live stream, reload the panes afterwards.
async function demoAction(btn, action) {
  btn.disabled = true;
  try {
    await action();
    if (state.stream?.readyState !== EventSource.OPEN) setTimeout(() => showDemo().catch(report), 1000);
  } catch (err) {
    if (!(err instanceof AuthError)) demoStatus(err.message, true);
  } finally {
    btn.disabled = false;
  }
}

// A composer form: send its input's text, then clear the input.
function onSend(form, input, btn, send) {
  $(form).addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $(input).value.trim();
    if (text && phoneOpenid()) demoAction($(btn), async () => { await send(text); $(input).value = ''; });
  });
}

function bindDemo() {
  $('#phone-openid').addEventListener('input', resolveDemoContact);
  onSend('#phone-form', '#phone-input', '#phone-send', async (text) => {
    const r = await api('/api/demo/wechat', { method: 'POST', body: { openid: phoneOpenid(), text } });
    demoStatus(`${phoneOpenid()} wrote; the bridge answered WeChat ${r.status} "${r.body}".`, r.status !== 200);
  });
  onSend('#agent-form', '#agent-input', '#agent-send', async (text) => {
    const body = { openid: phoneOpenid(), text, via: $('#agent-via').value };
    for (let attempt = 1; ; attempt++) {
      try { await api('/api/demo/agent', { method: 'POST', body }); break; } catch (err) {
        // 409: the customer's conversation on the platform is still being created; wait a moment.
        if (err.status !== 409 || attempt > 10) throw err;
        demoStatus(`Waiting for the ${platformName()} conversation…`);
        await sleep(500);
      }
    }
    const posted = { vonage: `posted a ${body.via === 'message' ? 'message' : 'custom:wechat:message'} event`,
      chatwoot: 'answered in Chatwoot', webhook: 'sent it through POST /api/v1/messages' };
    demoStatus(`The agent ${posted[state.platform] || 'answered'}.`);
  });
  $('#close-window').addEventListener('click', (e) => demoAction(e.currentTarget, async () => {
    await api('/api/demo/close-window', { method: 'POST', body: { openid: phoneOpenid() } });
    demoStatus(`WeChat now refuses replies to ${phoneOpenid()}: the next agent message fails until they write again.`);
  }));
}

// ---- live stream ----

function setLive(on) {
  $('#live').dataset.state = on ? 'on' : 'off';
  $('#live .live-text').textContent = on ? 'live' : 'disconnected';
}

async function connectStream() {
  stopStream();
  const attempt = ++state.streamAttempt;
  let query = '';
  if (state.token) {
    // EventSource cannot send headers, and a token in a URL ends up in logs: trade the token
    // for a ticket that opens the stream for 60 s (a 401 here shows the login form).
    try {
      const { ticket } = await api('/api/stream-ticket', { method: 'POST' });
      query = `?ticket=${encodeURIComponent(ticket)}`;
    } catch (err) {
      // The bridge is away (restarting?): try again, as EventSource itself would.
      if (!(err instanceof AuthError)) {
        setTimeout(() => { if (attempt === state.streamAttempt) connectStream().catch(report); }, 5000);
      }
      throw err;
    }
  }
  if (attempt !== state.streamAttempt) return; // signed out or reconnected meanwhile
  const es = new EventSource(`/api/stream${query}`);
  state.stream = es;
  // (Re)connected: reload the open page, as what happened before was not streamed to us.
  es.onopen = () => { setLive(true); route(); };
  es.addEventListener('message', (ev) => {
    let m;
    try { m = JSON.parse(ev.data); } catch { return; }
    state.recent = [...state.recent.slice(-299), { at: Date.now(), m }];
    applyMessage(m);
    if (state.convs.has(m.contact_id)) scheduleConvRefresh(); // counts and last activity
    else loadConversations().catch(report); // a new contact
  });
  es.onerror = () => {
    setLive(false);
    // The browser reconnects by itself unless the server refused (e.g. 401): then check and retry.
    if (es.readyState === EventSource.CLOSED) {
      setTimeout(() => { if (state.stream === es) { connectStream().catch(report); loadConversations().catch(report); } }, 5000);
    }
  };
}

function stopStream() {
  state.streamAttempt += 1; // a ticket still being fetched opens nothing
  state.stream?.close();
  state.stream = null;
  setLive(false);
}
// ---- routing, login, start ----

function route() {
  if (!state.session || !$('#login').hidden) return;
  let r = location.hash.slice(1);
  if (!ROUTES.includes(r) || (r === 'demo' && !state.session.demo)) r = 'conversations';
  state.route = r;
  $$('[data-page]').forEach((p) => { p.hidden = p.dataset.page !== r; });
  $$('#nav a').forEach((a) => (a.dataset.route === r ? a.setAttribute('aria-current', 'page') : a.removeAttribute('aria-current')));
  if (r !== 'health') stopHealth();
  ({ conversations: showConversations, messages: showMessages, health: startHealth, demo: showDemo })[r]().catch(report);
}

function showLogin(message = '') {
  state.token = '';
  sessionStorage.removeItem(TOKEN_KEY);
  stopStream();
  stopHealth();
  $('#app').hidden = $('#nav').hidden = $('#logout').hidden = true;
  $('#login').hidden = false;
  $('#login-error').textContent = message;
  Object.assign($('#login-token'), { value: '' }).focus();
}
function startApp() {
  $('#login').hidden = true;
  $('#app').hidden = $('#nav').hidden = false;
  $('#demo-tab').hidden = !state.session.demo;
  $('#logout').hidden = !state.session.auth_required;
  connectStream().catch(report);
  route();
}
async function boot() {
  try { state.session = await api('/api/session'); } catch (err) {
    notify(`Cannot reach the bridge (${err.message}); trying again…`);
    return setTimeout(boot, 3000);
  }
  if (state.session.auth_required && !state.token) showLogin();
  else startApp();
}

function bind() {
  window.addEventListener('hashchange', route);
  $('#login-form').addEventListener('submit', async (e) => {
    e.preventDefault();
    state.token = $('#login-token').value.trim();
    if (!state.token) return;
    sessionStorage.setItem(TOKEN_KEY, state.token);
    try { await api('/api/conversations'); } catch (err) { return report(err); } // a 401 shows the form again
    startApp();
  });
  $('#logout').addEventListener('click', () => showLogin('Signed out.'));
  $('#filters').addEventListener('submit', (e) => { e.preventDefault(); loadMessages().catch(report); });
  // Retry buttons live in the table and in threads: one delegated handler.
  document.addEventListener('click', (e) => {
    const btn = e.target.closest('button.retry');
    if (btn && !btn.disabled) retry(btn);
  });
  setInterval(() => $$('time[data-rel]').forEach((t) => { t.textContent = ago(Number(t.dataset.rel)); }), 30000);
  bindDemo();
}

bind();
boot();
