"""django-tenants' shared tables, as the app's migration to django-tenants made them
(PHARMACY_APP.md, section 2)."""
from django.db import models
from django_tenants.models import DomainMixin, TenantMixin


class Client(TenantMixin):
    name = models.CharField(max_length=100)
    created_on = models.DateField(auto_now_add=True)
    is_active = models.BooleanField(default=True)
    tenant_code = models.CharField(max_length=50, null=True, blank=True)
    access_pin = models.CharField(max_length=128, null=True, blank=True)
    subdomain = models.CharField(max_length=100, null=True, blank=True)
    db_name = models.CharField(max_length=100, null=True, blank=True)
    db_user = models.CharField(max_length=100, null=True, blank=True)
    db_password = models.CharField(max_length=100, null=True, blank=True)
    db_host = models.CharField(max_length=100, null=True, blank=True)
    db_port = models.CharField(max_length=10, null=True, blank=True)

    auto_create_schema = True


class Domain(DomainMixin):
    pass
