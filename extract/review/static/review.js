// Quote the words a reviewer selects in the criteria into the open form's evidence (its quote and
// criterion id); the server finds the exact offsets with the aligner. Delegated to the document so
// that it survives htmx swapping the page.
document.addEventListener("mouseup", function () {
  const form = document.querySelector("form.item-form");
  const selection = window.getSelection();
  if (!form || !selection || selection.isCollapsed) return;
  const quote = selection.toString().trim();
  const start = selection.anchorNode && selection.anchorNode.parentElement;
  const end = selection.focusNode && selection.focusNode.parentElement;
  const from = start && start.closest("[data-criterion]");
  const to = end && end.closest("[data-criterion]");
  if (!quote || !from || !to) return;  // only words of the criteria count
  const quoteInput = form.querySelector("textarea[name$='evidence.quote']");
  const criterionInput = form.querySelector("select[name$='evidence.criterion_id']");
  if (!quoteInput) return;
  quoteInput.value = quote;
  if (criterionInput) criterionInput.value = from === to ? from.dataset.criterion : "";
  quoteInput.dispatchEvent(new Event("change", { bubbles: true }));
});
