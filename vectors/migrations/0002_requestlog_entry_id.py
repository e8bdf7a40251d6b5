"""Every request gets its own log row: a server-made unique entry_id; request_id indexed, no longer unique.

request_id holds the answer's x-request-id, which is the client's own X-Request-ID when it sent one;
clients reuse ids and retries resend them, and the unique request_id made the sink's insert (which
ignores conflicts, so a re-written batch is stored once) drop the second request's row. The entry_id
now carries that idempotence.

Existing rows keep everything and get their primary key as entry_id (decimal, at most 19 digits: never
equal to a new 32-digit id). Django's recipe for a unique column on a table with rows: add it
nullable, fill it, then make it NOT NULL and unique. One migration is safe on PostgreSQL: the table
has no foreign keys, so the UPDATE leaves no deferred trigger events to block the ALTER TABLE after it.
Reversing fails while two rows share a request id (request_id cannot become unique again).
"""

from django.db import migrations, models
from django.db.models.functions import Cast

import vectors.models


def fill_entry_ids(apps, schema_editor):
    RequestLog = apps.get_model("vectors", "RequestLog")
    rows = RequestLog.objects.using(schema_editor.connection.alias)
    rows.filter(entry_id__isnull=True).update(entry_id=Cast("pk", models.CharField(max_length=32)))


class Migration(migrations.Migration):

    dependencies = [
        ("vectors", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="requestlog",
            name="entry_id",
            field=models.CharField(editable=False, max_length=32, null=True, verbose_name="entry id"),
        ),
        migrations.RunPython(fill_entry_ids, migrations.RunPython.noop, elidable=True),
        migrations.AlterField(
            model_name="requestlog",
            name="entry_id",
            field=models.CharField(
                default=vectors.models.new_entry_id, editable=False, max_length=32, verbose_name="entry id"
            ),
        ),
        migrations.AddConstraint(
            model_name="requestlog",
            constraint=models.UniqueConstraint(fields=("entry_id",), name="vectors_log_entry_id"),
        ),
        migrations.AlterField(
            model_name="requestlog",
            name="request_id",
            field=models.CharField(
                help_text="The answer's x-request-id: the client's own when it sent one, so several rows may share it.",
                max_length=64,
                verbose_name="request id",
            ),
        ),
        migrations.AddIndex(
            model_name="requestlog",
            index=models.Index(fields=["request_id"], name="vectors_log_request_id"),
        ),
    ]
