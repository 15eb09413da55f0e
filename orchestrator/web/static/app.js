// Keeps an open page current: fetches it again every few seconds and
// swaps in the new content when it changed. No framework; the page works
// without this script, only without refreshing.
(function () {
  'use strict';
  var live = document.getElementById('live');
  var conn = document.getElementById('conn');
  var period = Number(document.body.dataset.refresh) || 2000;
  var answering = false;

  // An answer is on its way: stop swapping content under it.
  document.addEventListener('submit', function (e) {
    answering = true;
    var b = e.target.querySelector('button');
    if (b) { setTimeout(function () { b.disabled = true; }, 0); }
  });

  // Back from an answer's result: the page is live again.
  window.addEventListener('pageshow', function (e) {
    if (!e.persisted) { return; }
    answering = false;
    document.querySelectorAll('button:disabled').forEach(function (b) { b.disabled = false; });
  });

  function state(text, down) {
    conn.textContent = text;
    conn.className = down ? 'conn down' : 'conn';
  }

  async function refresh() {
    if (answering || document.hidden) { return; }
    try {
      var r = await fetch(location.pathname, { cache: 'no-store', credentials: 'same-origin' });
      if (!r.ok) {
        state(r.status === 403 ? 'key no longer valid: open the address sluice up printed' : 'error ' + r.status, true);
        return;
      }
      var doc = new DOMParser().parseFromString(await r.text(), 'text/html');
      var next = doc.getElementById('live');
      if (next && next.innerHTML !== live.innerHTML && !answering) {
        live.replaceChildren.apply(live, Array.from(next.childNodes).map(function (n) { return document.adoptNode(n); }));
      }
      var pending = doc.getElementById('pending');
      var here = document.getElementById('pending');
      if (pending && here) { here.textContent = pending.textContent; here.className = pending.className; }
      document.title = doc.title;
      state('live', false);
    } catch (err) {
      state('not reachable: is sluice up running?', true);
    }
  }

  setInterval(refresh, period);
})();
