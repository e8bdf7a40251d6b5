"""Routes of the public API."""

from django.urls import path

from .. import conf
from . import views
from .metrics_view import metrics_view

urlpatterns = [
    path("v1/embeddings", views.EmbeddingsView.as_view(), name="openai-embeddings"),
    path("v1/models", views.ModelsView.as_view(), name="openai-models"),
    path("embed", views.EmbedView.as_view(), name="tei-embed"),
    path("similarity", views.SimilarityView.as_view(), name="similarity"),
    path("get_vector", views.GetVectorView.as_view(), name="get-vector"),
    path("get_vector_simple", views.GetVectorView.as_view(), name="get-vector-simple"),
    path("get_vector_async", views.GetVectorView.as_view(), name="get-vector-async"),
    path("info", views.InfoView.as_view(), name="info"),
    path("health", views.HealthView.as_view(), name="health"),
    path("ready", views.ReadyView.as_view(), name="ready"),
    path("metrics", metrics_view, name="metrics"),
]

if conf.limits().bench_views:
    # The write-up's two designs, for `manage.py benchmark --compare` only (EMBED_BENCH_VIEWS=1).
    from . import bench_views

    urlpatterns += [
        path("bench/get_vector_sync", bench_views.get_vector_sync, name="bench-get-vector-sync"),
        path("bench/get_vector_async", bench_views.get_vector_async, name="bench-get-vector-async"),
    ]
