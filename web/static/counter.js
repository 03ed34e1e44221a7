// The counter: search as you type (GET /api/v1/counter/search), a cart kept in the sale form,
// and an estimate of the totals and the change. The server prices the sale itself when it
// is posted; these figures only help the cashier.
(() => {
  'use strict';
  const form = document.getElementById('sale');
  const search = document.getElementById('search');
  if (!form || !search) return;
  const results = document.getElementById('results');
  const status = document.getElementById('search-status');
  const body = form.querySelector('#cart tbody');
  const empty = document.getElementById('empty');
  const currency = form.dataset.currency || '';

  // Money as whole cents, so the estimate adds up like the server's decimals.
  const cents = (text) => {
    const m = /^\s*(\d*)(?:\.(\d*))?\s*$/.exec(text || '');
    if (!m || (m[1] === '' && (m[2] || '') === '')) return null;
    return parseInt(m[1] || '0', 10) * 100 + parseInt(((m[2] || '') + '00').slice(0, 2), 10);
  };
  const show = (c) => {
    const sign = c < 0 ? '-' : '';
    const a = Math.abs(c);
    return `${currency} ${sign}${Math.floor(a / 100).toLocaleString('en')}.${String(a % 100).padStart(2, '0')}`;
  };
  // The tax rate in ten-thousandths (numeric(6,4)).
  const rate = (() => {
    const m = /^(\d*)(?:\.(\d{0,4}))?/.exec(form.dataset.taxRate || '0');
    return parseInt(m[1] || '0', 10) * 10000 + parseInt(((m[2] || '') + '0000').slice(0, 4), 10);
  })();

  const field = (name) => form.elements.namedItem(name);
  const rows = () => Array.from(body.querySelectorAll('tr'));

  function recalc() {
    let subtotal = 0;
    for (const row of rows()) {
      const qty = parseInt(row.querySelector('input.qty').value, 10) || 0;
      const line = (cents(row.dataset.price) || 0) * qty;
      subtotal += line;
      row.querySelector('.line-total').textContent = show(line);
      const stock = row.dataset.stock;
      row.classList.toggle('over', stock !== undefined && qty > parseInt(stock, 10));
    }
    const discount = cents(field('discount').value) || 0;
    const taxed = Math.max(subtotal - discount, 0);
    const tax = Math.round((taxed * rate) / 10000);
    const total = taxed + tax;
    document.getElementById('subtotal').textContent = show(subtotal);
    document.getElementById('discount-shown').textContent = show(discount);
    document.getElementById('tax').textContent = show(tax);
    document.getElementById('total').textContent = show(total);
    const cash = (field('payment_method') || {}).value === 'cash';
    const received = cents(field('amount_received').value);
    document.getElementById('change').textContent =
      cash && received !== null ? show(received - total) : '—';
    empty.hidden = rows().length > 0;
    document.getElementById('received-field').hidden = !cash;
  }

  function hidden(name, value) {
    const input = document.createElement('input');
    input.type = 'hidden';
    input.name = name;
    input.value = value;
    return input;
  }

  let counter = rows().length;
  function addToCart(item) {
    const existing = rows().find((r) => r.querySelector('input[name="medicine_id"]').value === String(item.id));
    if (existing) {
      const qty = existing.querySelector('input.qty');
      qty.value = (parseInt(qty.value, 10) || 0) + 1;
      existing.dataset.stock = item.stock;
      recalc();
      return;
    }
    counter += 1;
    const row = document.createElement('tr');
    row.dataset.price = item.sale_price;
    row.dataset.stock = item.stock;
    const name = item.strength && !item.name.includes(item.strength) ? `${item.name} ${item.strength}` : item.name;
    const first = document.createElement('td');
    first.append(name, hidden('medicine_id', item.id), hidden('line_name', name), hidden('line_price', item.sale_price));
    const price = document.createElement('td');
    price.className = 'num price';
    price.textContent = item.sale_price;
    const qtyCell = document.createElement('td');
    const label = document.createElement('label');
    label.className = 'sr-only';
    label.htmlFor = `qty-new-${counter}`;
    label.textContent = `Units of ${name}`;
    const qty = document.createElement('input');
    Object.assign(qty, { id: `qty-new-${counter}`, className: 'qty', name: 'quantity', type: 'number', min: '1', value: '1' });
    qtyCell.append(label, qty);
    const total = document.createElement('td');
    total.className = 'num line-total';
    const removeCell = document.createElement('td');
    const remove = document.createElement('button');
    Object.assign(remove, { type: 'button', className: 'remove link', textContent: 'Remove' });
    remove.setAttribute('aria-label', `Remove ${name}`);
    removeCell.append(remove);
    row.append(first, price, qtyCell, total, removeCell);
    body.append(row);
    recalc();
  }

  body.addEventListener('click', (event) => {
    const remove = event.target.closest('button.remove');
    if (remove) {
      remove.closest('tr').remove();
      recalc();
      search.focus();
    }
  });
  form.addEventListener('input', recalc);
  form.addEventListener('change', recalc);
  form.addEventListener('submit', (event) => {
    if (rows().length === 0) {
      event.preventDefault();
      status.textContent = 'The cart is empty.';
      search.focus();
      return;
    }
    // One click, one sale (the idempotency key would also make a second post harmless).
    document.getElementById('post-sale').disabled = true;
  });

  let found = [];
  function badge(item) {
    if (item.out_of_stock) return ['out of stock', 'critical'];
    if (!item.badge) return null;
    const days = item.days_to_expiry;
    return [`expires in ${days} day${days === 1 ? '' : 's'}`, item.badge];
  }
  function render(items) {
    found = items;
    results.replaceChildren();
    for (const item of items) {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.disabled = item.out_of_stock;
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = item.name;
      const price = document.createElement('span');
      price.className = 'price';
      price.textContent = `${currency} ${item.sale_price}`;
      const meta = document.createElement('span');
      meta.className = 'meta';
      const parts = [item.generic_name, [item.dosage_form, item.strength].filter(Boolean).join(' '), `${item.stock} in stock`];
      if (item.prescription_only) parts.push('Rx');
      for (const part of parts.filter(Boolean)) {
        const span = document.createElement('span');
        span.textContent = part;
        meta.append(span);
      }
      const b = badge(item);
      if (b) {
        const span = document.createElement('span');
        span.className = `badge ${b[1]}`;
        span.textContent = b[0];
        meta.append(span);
      }
      button.append(name, price, meta);
      button.addEventListener('click', () => choose(item));
      li.append(button);
      results.append(li);
    }
  }
  function choose(item) {
    addToCart(item);
    search.value = '';
    render([]);
    status.textContent = `${item.name} added.`;
    search.focus();
  }

  let timer = 0;
  let pending = null;
  async function lookup(q) {
    if (pending) pending.abort();
    pending = new AbortController();
    try {
      const response = await fetch(`/api/v1/counter/search?q=${encodeURIComponent(q)}`, {
        credentials: 'same-origin',
        headers: { Accept: 'application/json' },
        signal: pending.signal,
      });
      if (response.status === 401) {
        status.textContent = 'Your session has ended: log in again.';
        return;
      }
      const data = await response.json();
      if (!response.ok) {
        status.textContent = (data.error && data.error.message) || 'The search failed.';
        return;
      }
      render(data.items);
      status.textContent = data.items.length ? `${data.items.length} found.` : 'Nothing found.';
    } catch (e) {
      if (e.name !== 'AbortError') status.textContent = 'The search failed; try again.';
    }
  }
  search.addEventListener('input', () => {
    clearTimeout(timer);
    const q = search.value.trim();
    if (q.length < 2) {
      render([]);
      status.textContent = '';
      return;
    }
    timer = setTimeout(() => lookup(q), 150);
  });
  search.addEventListener('keydown', (event) => {
    if (event.key === 'Enter') {
      event.preventDefault();
      const first = found.find((i) => !i.out_of_stock);
      if (first) choose(first);
    } else if (event.key === 'ArrowDown') {
      const button = results.querySelector('button:not(:disabled)');
      if (button) {
        event.preventDefault();
        button.focus();
      }
    } else if (event.key === 'Escape') {
      search.value = '';
      render([]);
    }
  });
  results.addEventListener('keydown', (event) => {
    const buttons = Array.from(results.querySelectorAll('button:not(:disabled)'));
    const at = buttons.indexOf(document.activeElement);
    if (event.key === 'ArrowDown' && at < buttons.length - 1) {
      event.preventDefault();
      buttons[at + 1].focus();
    } else if (event.key === 'ArrowUp') {
      event.preventDefault();
      (at > 0 ? buttons[at - 1] : search).focus();
    } else if (event.key === 'Escape') {
      search.focus();
    }
  });

  recalc();
})();
