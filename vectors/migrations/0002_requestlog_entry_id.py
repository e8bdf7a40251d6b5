"""Every request gets its own log row: a server-made unique entry_id; request_id indexed, no longer unique.

request_id holds the answer's x-request-id, which is the client's own X-Request-ID when it sent one;
clients reuse ids and retries resend them, and the unique request_id made the sink's insert (which
ignores conflicts, so a re-written batch is stored once) drop the second request's row. The entry_id
now carries that idempotence.

entry_id stays nullable, for a rolling deploy: migrate first, while processes of the previous release
still write rows without it (NULLs never conflict in a unique constraint, on PostgreSQL as on SQLite),
then roll out the code that fills it. Rows from before keep NULL: nothing re-writes them. Adding a
nullable column without a database default rewrites no row; the two index builds hold the table's write
lock while they run (the request-log writer waits and retries meanwhile). Reversing fails while two rows
share a request id (request_id cannot become unique again).
"""

from django.db import migrations, models

import vectors.models


class Migration(migrations.Migration):
    dependencies = [
        ("vectors", "0001_initial"),
    ]

    operations = [
        # Without a default first: a callable default would be evaluated once and given to every old row.
        migrations.AddField(
            model_name="requestlog",
            name="entry_id",
            field=models.CharField(editable=False, max_length=32, null=True, verbose_name="entry id"),
        ),
        migrations.AlterField(
            model_name="requestlog",
            name="entry_id",
            field=models.CharField(
                default=vectors.models.new_entry_id, editable=False, max_length=32, null=True, verbose_name="entry id"
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
