// Polls the ticket's changing part every few seconds, so replies and status changes appear
// without a reload (a form being typed into is left alone: it lies outside the polled part).
(function () {
  var live = document.getElementById("live");
  if (!live) { return; }
  setInterval(function () {
    fetch(live.dataset.src, { credentials: "same-origin" }).then(function (response) {
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html !== null && html !== live.innerHTML) { live.innerHTML = html; }
    }).catch(function () {});
  }, 3000);
})();
