"""``/api/model`` says which chestx and which libraries serve the model."""

from chestx.versions import installed_versions


def test_api_model_reports_the_serving_versions(client):
    body = client.get("/api/model").get_json()
    versions = body["serving"]["versions"]
    assert versions == installed_versions()
    assert versions["tensorflow"] and versions["keras"] and versions["keras_tuner"]
