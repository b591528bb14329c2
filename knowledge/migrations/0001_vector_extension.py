from django.db import migrations
from pgvector.django import VectorExtension


class Migration(migrations.Migration):
    # Needs a role allowed to CREATE EXTENSION (the owner on managed PostgreSQL).
    dependencies = []

    operations = [VectorExtension()]
