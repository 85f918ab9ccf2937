// arvo-postgres dashboard: auto-refresh of pages marked data-refresh, confirmation of purges, and
// the action token kept for this tab only (sessionStorage). No framework, no inline script (CSP).
(() => {
  const main = document.querySelector('main');
  const seconds = Number(main?.dataset.refresh);
  if (main && seconds > 0) {
    const refresh = async () => {
      if (document.hidden) return;
      try {
        const response = await fetch(location.href, { headers: { accept: 'text/html' }, cache: 'no-store' });
        if (!response.ok) return;
        const next = new DOMParser()
          .parseFromString(await response.text(), 'text/html')
          .querySelector('main');
        if (next) main.replaceChildren(...next.childNodes);
      } catch {
        // Offline or restarting: keep the last view and try again at the next tick.
      }
    };
    setInterval(refresh, seconds * 1000);
  }

  const KEY = 'arvo-postgres-dashboard-token';
  for (const field of document.querySelectorAll('input[name="token"]')) {
    field.value = sessionStorage.getItem(KEY) ?? '';
    field.addEventListener('change', () => sessionStorage.setItem(KEY, field.value));
  }

  document.addEventListener('submit', (event) => {
    const button = event.submitter;
    const message = button?.dataset.confirm;
    if (message && !confirm(message)) event.preventDefault();
  });
})();
