"""The little Sao Mai shop the answer-engine and channel tests talk to."""

from tests.knowledge.helpers import ingest, make_knowledge_base, paste

HOURS = (
    "# Giờ mở cửa\n\nCửa hàng Sao Mai mở cửa từ 8 giờ sáng đến 10 giờ tối mỗi ngày, kể cả Chủ nhật.\n\n"
    "# Opening hours\n\nThe Sao Mai shop opens from 8 am to 10 pm every day, Sundays included."
)
DELIVERY = (
    "# Giao hàng\n\nPhí giao hàng nội thành là 20.000 đồng. Đơn từ 500.000 đồng được miễn phí giao hàng.\n\n"
    "# Delivery\n\nDelivery inside the city costs 20,000 VND. Orders over 500,000 VND ship free."
)


def shop_knowledge_base(
    documents: tuple[tuple[str, str], ...] = (("Store hours", HOURS), ("Delivery", DELIVERY)),
):
    """A knowledge base named "Sao Mai" with `documents` (title, text) indexed."""
    knowledge_base = make_knowledge_base("Sao Mai")
    for title, text in documents:
        ingest(paste(knowledge_base, text, title=title))
    knowledge_base.refresh_from_db()
    return knowledge_base
