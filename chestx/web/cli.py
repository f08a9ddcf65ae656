"""`chestx serve` (owned by the web service work)."""


def add_serve(sub) -> None:
    sub.add_parser("serve", help="serve the model over HTTP (not built yet)")
