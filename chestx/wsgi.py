"""WSGI entry point: ``gunicorn -c chestx/gunicorn.conf.py chestx.wsgi:app``.

Gunicorn imports this module in each worker after the fork (the config forbids ``--preload``).
The app is created without its model; ``gunicorn.conf.py``'s ``post_worker_init`` loads the
model before the worker accepts a request. Under any other WSGI server the first request
starts loading it in the background and ``/readyz`` answers 503 until it is ready.
"""

from chestx.web import create_app

app = create_app({"LOAD_MODEL": False})
