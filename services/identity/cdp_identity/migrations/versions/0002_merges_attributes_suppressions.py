"""The merge log (undoable merges), personal attributes with blocking keys, suppressions."""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, UUID

revision = "0002"
down_revision = "0001"

SCHEMA = "identity"


def upgrade() -> None:
    op.add_column("customers", sa.Column("merges_absorbed", sa.Integer, nullable=False,
                                         server_default="0"), schema=SCHEMA)
    op.create_index("customers_merged_into_idx", "customers", ["merged_into"], schema=SCHEMA,
                    postgresql_where=sa.text("merged_into IS NOT NULL"))
    op.create_table(
        "merges",
        sa.Column("id", UUID(as_uuid=False), primary_key=True),
        sa.Column("survivor_id", UUID(as_uuid=False), sa.ForeignKey(f"{SCHEMA}.customers.id"),
                  nullable=False),
        sa.Column("merged_id", UUID(as_uuid=False), sa.ForeignKey(f"{SCHEMA}.customers.id"),
                  nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("matched_on", ARRAY(sa.Text), nullable=False),
        # How many customers the merged one had absorbed itself, to undo the count exactly.
        sa.Column("merged_absorbed", sa.Integer, nullable=False),
        sa.Column("merged_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("unmerged_at", sa.DateTime(timezone=True), nullable=True),
        schema=SCHEMA,
    )
    op.create_index("merges_survivor_idx", "merges", ["survivor_id"], schema=SCHEMA)
    op.create_index("merges_merged_idx", "merges", ["merged_id"], schema=SCHEMA)
    # Which identity rows a merge moved, and their status before, so an unmerge moves exactly
    # those back.
    op.create_table(
        "merge_identities",
        sa.Column("merge_id", UUID(as_uuid=False),
                  sa.ForeignKey(f"{SCHEMA}.merges.id", ondelete="CASCADE"), nullable=False),
        sa.Column("identity_id", sa.BigInteger,
                  sa.ForeignKey(f"{SCHEMA}.identities.id", ondelete="CASCADE"), nullable=False),
        sa.Column("previous_status", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("merge_id", "identity_id"),
        schema=SCHEMA,
    )
    op.create_index("merge_identities_identity_idx", "merge_identities", ["identity_id"],
                    schema=SCHEMA)
    op.create_table(
        "person_attributes",
        sa.Column("customer_id", UUID(as_uuid=False),
                  sa.ForeignKey(f"{SCHEMA}.customers.id"), primary_key=True),
        sa.Column("given_name", sa.Text, nullable=False),
        sa.Column("family_name", sa.Text, nullable=False),
        sa.Column("birth_date", sa.Text, nullable=False),
        sa.Column("street_address", sa.Text, nullable=False),
        sa.Column("locality", sa.Text, nullable=False),
        sa.Column("postcode", sa.Text, nullable=False),
        sa.Column("region", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "blocking_keys",
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("customer_id", UUID(as_uuid=False),
                  sa.ForeignKey(f"{SCHEMA}.customers.id"), nullable=False),
        sa.PrimaryKeyConstraint("key", "customer_id"),
        schema=SCHEMA,
    )
    op.create_index("blocking_keys_customer_idx", "blocking_keys", ["customer_id"], schema=SCHEMA)
    op.create_table(
        "suppressions",
        # HMAC-SHA256 of kind, platform and normalised value: enough to recognise a forgotten
        # identifier, useless for recovering it.
        sa.Column("digest", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("suppressions", schema=SCHEMA)
    op.drop_table("blocking_keys", schema=SCHEMA)
    op.drop_table("person_attributes", schema=SCHEMA)
    op.drop_table("merge_identities", schema=SCHEMA)
    op.drop_table("merges", schema=SCHEMA)
    op.drop_index("customers_merged_into_idx", table_name="customers", schema=SCHEMA)
    op.drop_column("customers", "merges_absorbed", schema=SCHEMA)
