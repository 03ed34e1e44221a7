// Small behaviours for every page (no framework, no build step):
// - buttons with data-confirm ask before their form is sent;
// - buttons with data-print open the print dialog.
document.addEventListener('click', (event) => {
  const button = event.target.closest('button[data-confirm]');
  if (button && !window.confirm(button.dataset.confirm)) {
    event.preventDefault();
  }
  const print = event.target.closest('[data-print]');
  if (print) {
    event.preventDefault();
    window.print();
  }
});
