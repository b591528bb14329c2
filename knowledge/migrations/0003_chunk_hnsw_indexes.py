from django.db import migrations

# One partial HNSW index per embedding model: the column has no fixed dimension, so
# each index casts to its model's dimension and covers only that model's live rows.
# Queries must use the same expression and predicate (knowledge.retrieval).
# A new model in knowledge.embedding.registry needs a migration like this one.
MODELS = [
    ("local_e5_small", "local-e5-small", 384),
    ("gemini_embedding_001_768", "gemini-embedding-001-768", 768),
    ("bedrock_titan_v2_512", "bedrock-titan-v2-512", 512),
]


def create_sql(suffix: str, key: str, dimensions: int) -> str:
    return (
        f"CREATE INDEX knowledge_chunk_hnsw_{suffix} ON knowledge_chunk "
        f"USING hnsw ((embedding::vector({dimensions})) vector_cosine_ops) "
        f"WITH (m = 16, ef_construction = 64) "
        f"WHERE embedding_model = '{key}' AND is_live"
    )


class Migration(migrations.Migration):
    dependencies = [("knowledge", "0002_initial")]

    operations = [
        migrations.RunSQL(create_sql(*model), f"DROP INDEX knowledge_chunk_hnsw_{model[0]}")
        for model in MODELS
    ]
