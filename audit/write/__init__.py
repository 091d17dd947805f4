"""The writing path: a record from the pipeline (or a ruling from the dashboard) to a committed,
chained row, through the queue, the spool or the broker. Nothing here reads records back."""
