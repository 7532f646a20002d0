// The console's own script: it keeps an open inbox up to date. Every page
// works without it. The server sends an event when something the
// supervisor sees changes; the script then fetches the list again, with
// the filters of the page, and puts it in place.
(function () {
  'use strict';
  var list = document.getElementById('inbox-list');
  var state = document.getElementById('inbox-state');
  var status = document.getElementById('live-status');
  if (!list || !state || !status || !window.EventSource || !window.fetch) {
    return;
  }
  var busy = false;
  var again = false;

  function say(text) {
    status.textContent = text;
  }

  function refresh() {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    var body = new URLSearchParams(new FormData(state));
    fetch(state.action, {
      method: 'POST',
      body: body,
      credentials: 'same-origin',
      headers: { 'X-Console-Fragment': 'inbox' }
    }).then(function (r) {
      if (r.status === 401) {
        window.location.assign('/console/signin?ended=revoked');
        throw new Error('signed out');
      }
      if (!r.ok) {
        throw new Error('status ' + r.status);
      }
      return r.text();
    }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, 'text/html');
      var fresh = doc.getElementById('inbox-list');
      if (fresh) {
        list.replaceWith(fresh);
        list = fresh;
        say('The inbox was updated at ' + new Date().toLocaleTimeString() + '.');
      }
    }).catch(function () {
      say('The inbox could not be updated; reload the page to see the latest.');
    }).finally(function () {
      busy = false;
      if (again) {
        again = false;
        refresh();
      }
    });
  }

  var events = new EventSource('/console/events');
  // Leaving the page (a link, a form, signing out) closes the stream
  // first, so that its last events cannot send the page elsewhere.
  var leave = function () {
    events.close();
  };
  window.addEventListener('beforeunload', leave);
  document.addEventListener('submit', leave, true);
  events.addEventListener('ready', function () {
    say('Live: this inbox updates itself.');
  });
  events.addEventListener('inbox', refresh);
  events.addEventListener('ended', function (e) {
    events.close();
    window.location.assign('/console/signin?ended=' + encodeURIComponent(e.data));
  });
  events.addEventListener('shutdown', function () {
    say('The server is shutting down; the inbox updates again once it is back.');
  });
  events.onerror = function () {
    if (events.readyState === EventSource.CLOSED) {
      say('Live updates stopped; reload the page to see the latest.');
    } else {
      say('Live updates paused: reconnecting…');
    }
  };
})();
