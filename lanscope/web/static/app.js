// lanscope dashboard: the live feed. One EventSource per page (URL in <body data-stream>);
// each event carries a list item rendered (and escaped) by the server. New items go on top
// of #feed; the body gets a "lanscope-event" DOM event (htmx refreshes the parts that listen),
// and "lanscope-host-event" when the host is on this page (the hosts table).
(function () {
  "use strict";
  var body = document.body;
  var url = body.getAttribute("data-stream");
  var state = document.getElementById("live-state");
  function show(text, cls) {
    if (state) { state.textContent = text; state.className = "live-state " + (cls || ""); }
  }
  if (!url || !window.EventSource) { show("live: off", "off"); return; }
  var lastSeq = 0;
  var source = new EventSource(url);
  source.addEventListener("status", function (message) {
    var status = {};
    try { status = JSON.parse(message.data); } catch (e) { /* keep the default */ }
    if (status.pipeline) { show("live", "ok"); } else { show("live: no pipeline", "off"); }
  });
  source.onerror = function () { show("live: reconnecting…", "off"); };
  source.addEventListener("lanscope", function (message) {
    var data;
    try { data = JSON.parse(message.data); } catch (e) { return; }
    if (data.seq <= lastSeq) { return; }
    lastSeq = data.seq;
    var feed = document.getElementById("feed");
    if (feed && !feed.querySelector('[data-seq="' + data.seq + '"]')) {
      var holder = document.createElement("ul");
      holder.innerHTML = data.html;                 // server-rendered, autoescaped
      var item = holder.firstElementChild;
      if (item) {
        item.classList.add("fresh");
        feed.insertBefore(item, feed.firstChild);
        var max = parseInt(feed.getAttribute("data-max") || "200", 10);
        while (feed.children.length > max) { feed.removeChild(feed.lastElementChild); }
        var empty = feed.parentNode.querySelector(".empty");
        if (empty) { empty.remove(); }
      }
    }
    var detail = { kind: data.kind, hostKey: data.host_key, seq: data.seq };
    body.dispatchEvent(new CustomEvent("lanscope-event", { detail: detail }));
    if (data.kind === "new") { body.dispatchEvent(new CustomEvent("lanscope-new", { detail: detail })); }
    var rows = document.querySelectorAll("[data-host-key]");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-host-key") === data.host_key) {
        body.dispatchEvent(new CustomEvent("lanscope-host-event", { detail: detail }));
        break;
      }
    }
  });
  window.addEventListener("beforeunload", function () { source.close(); });
})();
