// Stripe's card form: the card is entered in Stripe's own Element (Stripe.js, loaded by the
// page just before this file) and confirmed with Stripe against a SetupIntent the server
// made; only the SetupIntent's id comes back to us. No inline script: the page's CSP allows
// this file and Stripe.js only.
"use strict";
(function () {
  const form = document.getElementById("stripe-card");
  if (!form) return;
  const errors = document.getElementById("card-errors");
  if (typeof window.Stripe !== "function") {
    errors.textContent = form.dataset.unavailable;
    return;
  }
  const stripe = window.Stripe(form.dataset.key);
  const card = stripe.elements().create("card");
  card.mount("#card-element");
  form.dataset.ready = "true";
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    errors.textContent = "";
    const result = await stripe.confirmCardSetup(form.dataset.secret, {
      payment_method: { card: card },
    });
    if (result.error) {
      errors.textContent = result.error.message || String(result.error);
      button.disabled = false;
      return;
    }
    form.querySelector("input[name=setup_intent]").value = result.setupIntent.id;
    form.submit();
  });
})();
