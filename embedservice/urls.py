"""Root URLs: the API at the root, the admin, the OpenAPI schema and its UI."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", include("vectors.api.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

handler400 = "vectors.api.errors.handler400"
handler404 = "vectors.api.errors.handler404"
handler500 = "vectors.api.errors.handler500"
